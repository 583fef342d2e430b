"""A small synthetic catalogue made by this project (no licence questions): for the README demo and tests.

Each product is a colour x article type with a drawn silhouette as its photo, a
title, a short description and attributes. Some titles are deliberately poor
("text is often poor where the image is clear"), so image legs have something to add.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "Red": (200, 30, 40),
    "Blue": (30, 80, 200),
    "Green": (30, 150, 60),
    "Black": (20, 20, 20),
    "White": (240, 240, 240),
    "Yellow": (235, 200, 30),
    "Pink": (235, 120, 170),
    "Navy Blue": (20, 30, 90),
}
TYPES = {
    "Tshirts": ("T-shirt", "Apparel", "Topwear", "a soft cotton crew-neck t-shirt"),
    "Kurtas": ("Kurta", "Apparel", "Topwear", "a long straight kurta with a mandarin collar"),
    "Jeans": ("Jeans", "Apparel", "Bottomwear", "slim fit denim jeans with five pockets"),
    "Casual Shoes": ("Sneakers", "Footwear", "Shoes", "lace-up casual sneakers with a rubber sole"),
    "Handbags": ("Handbag", "Accessories", "Bags", "a structured handbag with two handles"),
    "Watches": ("Watch", "Accessories", "Watches", "an analogue watch with a leather strap"),
}
BRANDS = ["Acme", "Northwind", "Lumen", "Kestrel"]
GENDERS = {"Kurtas": "Women", "Handbags": "Women"}


def _draw(article_type: str, rgb: tuple[int, int, int], size: tuple[int, int] = (60, 80)) -> Image.Image:
    img = Image.new("RGB", size, (250, 250, 250) if sum(rgb) < 600 else (190, 190, 200))
    d = ImageDraw.Draw(img)
    w, h = size
    if article_type == "Tshirts":
        d.polygon([(10, 15), (22, 10), (38, 10), (50, 15), (56, 30), (46, 32), (46, 70), (14, 70), (14, 32), (4, 30)], fill=rgb)
    elif article_type == "Kurtas":
        d.polygon([(18, 8), (42, 8), (50, 20), (52, 76), (8, 76), (10, 20)], fill=rgb)
    elif article_type == "Jeans":
        d.polygon([(14, 8), (46, 8), (50, 76), (34, 76), (30, 30), (26, 76), (10, 76)], fill=rgb)
    elif article_type == "Casual Shoes":
        d.polygon([(4, 45), (30, 40), (40, 48), (56, 52), (56, 60), (4, 60)], fill=rgb)
        d.rectangle([(4, 60), (56, 64)], fill=(230, 230, 230))
    elif article_type == "Handbags":
        d.arc([(18, 10), (42, 40)], 180, 360, fill=rgb, width=4)
        d.rectangle([(10, 25), (50, 65)], fill=rgb)
    else:  # Watches
        d.rectangle([(26, 5), (34, 75)], fill=(90, 60, 40))
        d.ellipse([(15, 25), (45, 55)], fill=rgb, outline=(60, 60, 60), width=2)
    return img


def write_sample_catalogue(out_dir: str | Path, *, seed: int = 7) -> Path:
    """Write ``catalogue.jsonl`` and ``images/*.png`` under ``out_dir``; returns the catalogue path."""
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    number = 0
    for article_type, (noun, master, sub, blurb) in TYPES.items():
        for colour, rgb in COLOURS.items():
            number += 1
            pid = f"S{number:03d}"
            brand = rng.choice(BRANDS)
            gender = GENDERS.get(article_type, rng.choice(["Men", "Women", "Unisex"]))
            image = f"images/{pid}.png"
            _draw(article_type, rgb).save(out / image)
            poor = number % 3 == 0  # a third of the titles lost colour and type, as marketplaces' often do
            title = f"{brand} {gender} Essential {number}" if poor else f"{brand} {gender} {colour} {noun}"
            lines.append(
                {
                    "id": pid,
                    "title": title,
                    "description": "" if poor else f"{colour} {blurb}.",
                    "brand": brand,
                    "master_category": master,
                    "sub_category": sub,
                    "article_type": article_type,
                    "colour": colour,
                    "gender": gender,
                    "price": round(rng.uniform(9, 120), 2),
                    "image": image,
                }
            )
    path = out / "catalogue.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path
