from hybrid_cli.main import cli

cli()
