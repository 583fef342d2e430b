"""Evaluation on the Myntra protocol (../shared/eval): strategies x query kinds x metrics."""
