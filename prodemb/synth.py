"""Seeded synthetic click logs for a Spanish-language marketplace (the project's default data).

The demo, the tests and the benchmarks need click logs that the project can make by itself, without
real data. This module generates logs shaped like the MercadoLibre ones the paper learns from, with the
properties that the pipeline (sessionize -> pairs -> title encoder) and the downstream tasks rely on:

* a catalog whose titles are built from category-specific vocabulary (brands, models, measures, accented
  words such as "Cámara", "Teléfono", "Niño", "Batería", "Cartón"), with stopwords and punctuation
  ("de", "para", "con", "+", "/", "-") and some casing noise, so title normalization matters;
* users whose sessions stay mostly inside one category (and often inside one product type), Zipf-like
  product popularity, repeated views of a product inside a session;
* inter-event gaps that make the 30-minute inactivity cut meaningful: seconds to minutes inside a
  session, a few pauses around 30 minutes, hours to days between a user's sessions;
* downstream labels (`condition`, `free_shipping`, `price`) that depend on title words, brand tier,
  category and price, but through noise, so they are learnable from the title and never a function of it.

Scale and determinism: the click log is generated in fixed blocks of users, each block with its own RNG
stream derived from the seed, fully vectorized with numpy (no per-click Python), and streamed out as Arrow
record batches of at most `chunk_clicks` rows. Memory is bounded by the chunk size (plus one user block
and O(n_users) click counts); output is byte-identical for a given spec and does not depend on
`chunk_clicks` except for where the batches are cut. Per-product title generation is plain Python, which
is fine for catalogs of up to a few hundred thousand products.

Public API: `SynthSpec`, `make_catalog`, `iter_click_batches`, `generate`, `write_task_tables`, and a
CLI: ``python -m prodemb.synth --out DIR [--clicks N] [--products N] [--seed S]``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodemb import fs

__all__ = [
    "SynthSpec",
    "CLICK_SCHEMA",
    "CATEGORY_NAMES",
    "make_catalog",
    "iter_click_batches",
    "generate",
    "write_task_tables",
]

# Canonical click-log schema (what the source adapters produce for real logs too).
CLICK_SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("ts", pa.timestamp("ms", tz="UTC")),
    ("product_id", pa.string()),
    ("title", pa.string()),
    ("category", pa.string()),
    ("site", pa.string()),
])


ROW_GROUP_ROWS = 131_072


@dataclass
class SynthSpec:
    n_clicks: int = 200_000
    n_products: int = 5_000
    n_users: int | None = None       # default: n_clicks // 40 (about 40 clicks, ~6 sessions per user)
    n_categories: int | None = None  # default: all built-in categories (the first N otherwise)
    seed: int = 7
    start: str = "2024-01-01"        # first day of the log (UTC)
    days: int = 30
    site: str = "MLA"
    chunk_clicks: int = 1_000_000


# --------------------------------------------------------------------------------------------------
# Vocabulary. One entry per category; each category lists product types. A type is
#   (noun, median price in ARS, brands, models, attribute pools[, brand_last])
# brands: {name: tier} with tier 0 = budget, 1 = mid, 2 = premium (drives price and free shipping);
#   an empty dict means unbranded goods.
# models: a tuple shared by all brands, or {brand: tuple}; '#' becomes a digit, '@' an uppercase letter.
# pools: each pool contributes at most one attribute phrase to a title.
# Category fields: traffic (share of sessions), share (share of catalog), used (base rate of used
# items), ship (logit offset of free shipping).
# --------------------------------------------------------------------------------------------------
_COLORS = ("Negro", "Blanco", "Gris", "Azul", "Rojo", "Verde")
_TALLES = ("Talle S", "Talle M", "Talle L", "Talle Xl")
_CALZADO = ("Talle 38", "Talle 39", "Talle 40", "Talle 41", "Talle 42", "Talle 43")
_PHONES = ("Samsung A54", "Samsung A14", "iPhone 13", "iPhone 15", "Moto G84", "Redmi Note 12")
_TOOLS = {"Bosch": 2, "Dewalt": 2, "Makita": 2, "Black+Decker": 1, "Gamma": 0, "Lusqtoff": 0}
_TOOL_MODELS = {"Bosch": ("Gsb 13 Re", "Gws 850", "Gsr 180-li"), "Dewalt": ("Dcd776", "Dwe4010", "Dcf885"),
                "Makita": ("Hp1640", "Ga4530", "Df457d"), "Black+Decker": ("Tm500", "G720", "Ld12sp"),
                "Gamma": ("G1950", "G1910", "G12101"), "Lusqtoff": ("Tpl-###", "Ag-###", "Lq-##")}

_CATEGORIES: list[dict] = [
    dict(name="Celulares y Teléfonos", traffic=1.6, share=1.0, used=0.15, ship=0.5, types=[
        ("Celular", 280_000, {"Samsung": 2, "Apple": 2, "Motorola": 1, "Xiaomi": 1, "Alcatel": 0, "Tcl": 0},
         {"Samsung": ("Galaxy A54", "Galaxy A14", "Galaxy A34", "Galaxy S23", "Galaxy S24 Ultra", "Galaxy Z Flip5"),
          "Apple": ("iPhone 11", "iPhone 13", "iPhone 14 Pro", "iPhone 15 Pro Max", "iPhone Se"),
          "Motorola": ("Moto G84", "Moto G54", "Moto E13", "Edge 40", "Moto G32"),
          "Xiaomi": ("Redmi Note 12", "Redmi 12c", "Poco X5 Pro", "Redmi Note 13 Pro"),
          "Alcatel": ("1s", "3l", "1b"), "Tcl": ("403", "30 Se", "40r")},
         [("64gb", "128gb", "256gb", "512gb"), ("4gb Ram", "6gb Ram", "8gb Ram"), _COLORS,
          ("Dual Sim", "Libre", "Liberado", "4g", "5g")]),
        ("Funda Para Celular", 6_000, {"Spigen": 2, "Otterbox": 2, "Ringke": 1}, _PHONES,
         [("Antigolpe", "Silicona", "Tpu", "Flip Cover"), ("Transparente", "Negra", "Con Tapa", "Con Anillo")]),
        ("Cargador", 12_000, {"Samsung": 2, "Apple": 2, "Xiaomi": 1, "Noga": 0, "Kolke": 0},
         ("Usb-c 25w", "Tipo C 20w", "Carga Rápida 33w", "Micro Usb 10w"),
         [("Con Cable", "+ Cable 1m", "Doble Usb"), ("Blanco", "Negro")]),
        ("Auriculares Bluetooth", 30_000, {"Jbl": 1, "Sony": 2, "Samsung": 2, "Xiaomi": 0, "Philips": 1},
         {"Jbl": ("Tune 510bt", "Wave 100", "Tune 720bt"), "Sony": ("Wh-ch520", "Wf-c500", "Wh-1000xm5"),
          "Samsung": ("Galaxy Buds2", "Galaxy Buds Fe"), "Xiaomi": ("Redmi Buds 4", "Mi Earbuds"),
          "Philips": ("Tat1207", "Tah4205")},
         [("Inalámbricos", "In Ear", "Vincha"), ("Con Micrófono", "Cancelación De Ruido"), _COLORS]),
        ("Teléfono Inalámbrico", 35_000, {"Panasonic": 1, "Motorola": 1, "Philips": 1, "Alcatel": 0},
         ("Kx-tgc###", "M###", "D###"),
         [("Con Contestador", "Manos Libres", "Identificador De Llamadas"), ("Dúo", "Trío"), ("Negro", "Blanco")]),
        ("Vidrio Templado", 3_500, {}, _PHONES,
         [("9h", "Full Glue", "Cerámico"), ("Pack X 2", "Pack X 3")]),
    ]),
    dict(name="Cámaras y Accesorios", traffic=0.8, share=0.6, used=0.25, ship=0.4, types=[
        ("Cámara Digital", 350_000, {"Canon": 2, "Nikon": 2, "Sony": 2, "Fujifilm": 2, "Kodak": 0},
         {"Canon": ("Eos 4000d", "Eos Rebel T7", "Eos M50", "Powershot Sx740"),
          "Nikon": ("D3500", "D5600", "Coolpix B500", "Z50"), "Sony": ("Alpha A6000", "Alpha A7 Iii", "Dsc-w830"),
          "Fujifilm": ("X-t30", "X-s10", "Instax Mini 12"), "Kodak": ("Pixpro Fz55", "Pixpro Az401")},
         [("18mp", "20mp", "24mp", "45mp"), ("+ Lente 18-55mm", "Kit Lente 18-55", "Cuerpo Solo"),
          ("Wifi", "4k", "Full Hd")]),
        ("Cámara De Seguridad", 30_000, {"Hikvision": 1, "Dahua": 1, "Xiaomi": 1, "Tp-link": 0, "Imou": 0},
         ("Ds-2ce##@", "Mi 360", "Tapo C200", "Ranger 2", "Ipc-@##"),
         [("Wifi", "Ip", "Exterior", "Interior"), ("1080p", "2k", "4mp"),
          ("Visión Nocturna", "Con Audio", "Detección De Movimiento")]),
        ("Lente", 250_000, {"Canon": 2, "Nikon": 2, "Sony": 2, "Sigma": 1, "Yongnuo": 0},
         ("50mm F1.8", "18-55mm", "70-300mm", "24-70mm F2.8", "85mm F1.8"),
         [("Stm", "Autofoco", "Estabilizado"), ("Para Canon", "Para Nikon", "Montura E")]),
        ("Trípode", 15_000, {"Manfrotto": 2, "Benro": 1}, ("Compact", "Befree", "Pro ###"),
         [("170 cm", "150 cm", "1.2 Metros"), ("Con Cabezal", "Para Celular Y Cámara", "+ Bolso")]),
        ("Batería Para Cámara", 18_000, {"Canon": 2, "Nikon": 2, "Kingma": 0},
         ("Lp-e17", "En-el14", "Np-fw50", "Lp-e10"), [("Alternativa", "+ Cargador Dual", "1200mah")]),
        ("Tarjeta De Memoria", 9_000, {"Sandisk": 1, "Kingston": 1, "Samsung": 1},
         ("Extreme", "Ultra", "Canvas Select", "Evo Plus"),
         [("32gb", "64gb", "128gb", "256gb"), ("Micro Sd", "Sd"), ("Clase 10", "U3 V30", "170mb/s")]),
    ]),
    dict(name="Juguetes y Bebés", traffic=1.0, share=1.0, used=0.08, ship=0.2, types=[
        ("Muñeca", 25_000, {"Barbie": 2, "Baby Alive": 1, "Cry Babies": 1, "Lol Surprise": 1},
         ("Fashionista", "Princesa", "Bebé Llorón", "Dreamhouse", "Sirena"),
         [("Para Niña",), ("Con Accesorios", "Con Ropa", "Articulada", "Con Mascota"), ("30 cm", "45 cm", "28 cm")]),
        ("Auto A Control Remoto", 30_000, {"Hot Wheels": 1, "Maisto": 1, "Shantou": 0},
         ("Rock Crawler", "Monster Truck", "Drift 4x4", "Rally"),
         [("4x4", "Recargable", "Con Batería"), ("Escala 1:18", "Escala 1:24"), ("Para Niño",)]),
        ("Bloques De Construcción", 40_000, {"Lego": 2, "Mega Bloks": 1, "Rasti": 1},
         {"Lego": ("City ####", "Star Wars ####", "Technic ####", "Friends ####"),
          "Mega Bloks": ("Granja", "Camión", "Bolsa Grande"), "Rasti": ("Dimax", "Blister", "Bolsa")},
         [("100 Piezas", "250 Piezas", "500 Piezas", "1000 Piezas"), ("+6 Años", "+8 Años", "+3 Años")]),
        ("Cochecito De Bebé", 150_000, {"Chicco": 2, "Infanti": 1, "Bebesit": 1, "Love": 0},
         ("Travel System", "Paraguitas", "Trio", "Liviano ###"),
         [("Con Huevito", "Plegable", "Reclinable"), ("Niño", "Niña", "Unisex")]),
        ("Peluche", 8_000, {"Disney": 1, "Phi Phi Toys": 1},
         ("Oso", "Stitch", "Unicornio", "Pikachu", "Perro"),
         [("30 cm", "50 cm", "1 Metro"), ("Gigante", "Suave", "Con Sonido")]),
        ("Rompecabezas", 7_000, {"Ravensburger": 2, "Implás": 0, "Antex": 0},
         ("Paisaje", "Mapa Mundi", "Princesas", "Torre Eiffel"),
         [("100 Piezas", "500 Piezas", "1000 Piezas", "1500 Piezas")]),
    ]),
    dict(name="Hogar, Muebles y Jardín", traffic=1.3, share=1.3, used=0.1, ship=0.1, types=[
        ("Silla", 45_000, {"Mobilarg": 1, "Platinum": 0, "Dimensión": 1},
         ("Eames", "Tulip", "Nórdica", "Tolix", "Plegable"),
         [("Madera", "Metal", "Polipropileno"), ("Negra", "Blanca", "Gris", "Madera Natural"),
          ("Pack X 4", "Pack X 2", "Para Comedor")]),
        ("Mesa De Comedor", 180_000, {"Mobilarg": 1, "Platinum": 0, "Dimensión": 1},
         ("Nórdica", "Extensible", "Redonda", "Rectangular"),
         [("Madera Maciza", "Vidrio", "Melamina"), ("4 Personas", "6 Personas", "8 Personas"),
          ("140x80", "160x90", "120 cm")]),
        ("Colchón", 350_000, {"Simmons": 2, "Cannon": 1, "Piero": 1, "Suavestar": 0},
         ("Exclusive", "Princess", "Foam", "Sonno", "Doral"),
         [("1 Plaza", "2 Plazas", "Queen", "King"), ("140x190", "80x190", "160x200"),
          ("Resortes", "Espuma Alta Densidad", "Pocket"), ("+ Almohadas",)]),
        ("Lámpara", 15_000, {"Philips": 1, "Candil": 0},
         ("De Pie", "Colgante", "De Mesa", "Velador"),
         [("Led", "E27", "Nórdica", "Vintage"), ("Madera", "Metal", "Vidrio", "Ratán")]),
        ("Juego De Sábanas", 20_000, {"Cannon": 1, "Arredo": 2, "Palette": 1},
         ("Algodón 144 Hilos", "Microfibra", "Percal 200 Hilos", "Flannel"),
         [("1 1/2 Plaza", "2 Plazas", "Queen", "King"), ("Blanco", "Gris", "Estampado")]),
        ("Caja Organizadora", 5_000, {"Colombraro": 0, "Tramontina": 1},
         ("Plástica", "De Cartón", "Apilable", "Con Tapa"),
         [("15 Litros", "30 Litros", "60 Litros"), ("Pack X 3", "Pack X 6")]),
    ]),
    dict(name="Herramientas", traffic=0.9, share=0.9, used=0.15, ship=0.35, types=[
        ("Taladro Percutor", 90_000, _TOOLS, _TOOL_MODELS,
         [("500w", "650w", "750w", "850w"), ("13mm", "10mm"), ("Con Maletín", "+ Accesorios", "+ 100 Piezas"),
          ("220v",)]),
        ("Amoladora Angular", 70_000, _TOOLS, _TOOL_MODELS,
         [("115mm", "125mm", "180mm"), ("720w", "850w", "2200w"), ("Con Disco", "+ Maletín")]),
        ("Atornillador Inalámbrico", 85_000, _TOOLS, _TOOL_MODELS,
         [("12v", "18v", "20v"), ("+ 2 Baterías", "+ Batería", "Sin Batería"), ("Con Maletín",)]),
        ("Sierra Circular", 120_000, _TOOLS, _TOOL_MODELS, [("185mm", "7 1/4"), ("1400w", "1800w")]),
        ("Set De Llaves", 25_000, {"Stanley": 1, "Bahco": 2, "Crossmaster": 0, "Bremen": 0},
         ("Combinadas", "Tubos", "Allen", "Criquet"),
         [("12 Piezas", "24 Piezas", "40 Piezas", "94 Piezas"), ("Con Caja", "Cromo Vanadio", "1/4 - 1/2")]),
        ("Caja De Herramientas", 30_000, {"Stanley": 1, "Tactix": 0, "Bremen": 0, "Truper": 0},
         ("Organizadora", "Metálica", "Con Ruedas", "19 Pulgadas"),
         [("+ 100 Herramientas", "Vacía", "Con Bandeja")]),
    ]),
    dict(name="Deportes y Fitness", traffic=1.0, share=1.0, used=0.1, ship=0.3, types=[
        ("Zapatillas Running", 90_000, {"Nike": 2, "Adidas": 2, "Puma": 1, "Topper": 0, "Fila": 1, "Asics": 2},
         {"Nike": ("Revolution 6", "Air Zoom Pegasus 40", "Downshifter 12"),
          "Adidas": ("Duramo Sl", "Ultraboost 22", "Runfalcon 3"), "Puma": ("Velocity Nitro", "Flyer Runner"),
          "Topper": ("Strong Pace", "Fast"), "Fila": ("Racer", "Float Maxxi"), "Asics": ("Gel Nimbus 25", "Gel Excite 9")},
         [("Hombre", "Mujer"), _CALZADO, _COLORS]),
        ("Bicicleta Mountain Bike", 450_000, {"Venzo": 1, "Trek": 2, "Specialized": 2, "Raleigh": 1, "Topmega": 0},
         ("Mojave 2.0", "Marlin 5", "Rockhopper", "Frida", "Primal", "X-###"),
         [("Rodado 29", "Rodado 26", "Rodado 27.5"), ("21 Velocidades", "24 Vel", "Shimano"),
          ("Frenos A Disco", "Aluminio", "Doble Suspensión")]),
        ("Pelota De Fútbol", 20_000, {"Adidas": 2, "Nike": 2, "Penalty": 1, "Puma": 1, "Drb": 0},
         ("Al Rihla", "Tango", "Flight", "Strike", "Brazuca"),
         [("N° 5", "N° 4", "N° 3"), ("Profesional", "Réplica", "Papi Fútbol")]),
        ("Mancuernas", 25_000, {"Randers": 1, "Gadnic": 0},
         ("Hexagonales", "Regulables", "Cromadas", "Engomadas"),
         [("2 Kg", "5 Kg", "10 Kg", "20 Kg"), ("Par", "Set", "+ Barra")]),
        ("Colchoneta Yoga", 12_000, {"Gadnic": 0, "Reebok": 1, "Adidas": 1}, ("Mat", "Eva", "Tpe"),
         [("4mm", "6mm", "10mm"), ("Con Bolso", "Antideslizante")]),
        ("Raqueta De Tenis", 110_000, {"Wilson": 2, "Babolat": 2, "Head": 2, "Prince": 1},
         ("Pro Staff", "Pure Drive", "Speed", "Clash 100"), [("Grip 2", "Grip 3"), ("+ Funda", "300g", "Encordada")]),
    ]),
    dict(name="Belleza y Cuidado Personal", traffic=0.9, share=0.9, used=0.02, ship=0.2, types=[
        ("Perfume", 90_000, {"Carolina Herrera": 2, "Paco Rabanne": 2, "Antonio Banderas": 1, "Natura": 1, "Avon": 0},
         {"Carolina Herrera": ("212 Vip", "Good Girl", "Ch Men"), "Paco Rabanne": ("1 Million", "Invictus", "Lady Million"),
          "Antonio Banderas": ("Blue Seduction", "The Golden Secret", "Her Secret"),
          "Natura": ("Kaiak", "Essencial", "Ekos"), "Avon": ("Far Away", "Black Suede")},
         [("50 ml", "100 ml", "200 ml"), ("Eau De Parfum", "Eau De Toilette"), ("Hombre", "Mujer")]),
        ("Plancha De Pelo", 40_000, {"Gama": 1, "Remington": 1, "Philips": 1, "Babyliss": 2},
         ("Elegance", "Pro Titanium", "Keratin", "Digital Ion"),
         [("Cerámica", "Titanio", "Turmalina"), ("230°c", "210°c"), ("Iónica", "Profesional")]),
        ("Secador De Pelo", 45_000, {"Gama": 1, "Remington": 1, "Philips": 1, "Babyliss": 2},
         ("Tempo", "Pro 2200", "Ionic ###", "Compact"),
         [("1800w", "2000w", "2200w"), ("Iónico", "Con Difusor", "+ Concentrador", "Profesional")]),
        ("Crema Facial", 12_000, {"Nivea": 1, "L'Oréal": 1, "La Roche-Posay": 2, "Cetaphil": 2, "Garnier": 0},
         ("Revitalift", "Hidratante", "Antiarrugas", "Effaclar", "Q10"),
         [("50 ml", "100 ml"), ("Día", "Noche", "Fps 30", "Con Ácido Hialurónico")]),
        ("Afeitadora", 55_000, {"Philips": 1, "Gillette": 1, "Braun": 2, "Remington": 1},
         ("Oneblade", "Series 3", "Mach3", "Series 7"), [("Recargable", "Inalámbrica", "Seco Y Húmedo", "+ Repuestos")]),
        ("Set De Maquillaje", 25_000, {"Maybelline": 1, "Revlon": 1, "Mac": 2, "Ruby Rose": 0},
         ("Completo", "Paleta De Sombras", "Kit", "Profesional"),
         [("12 Colores", "24 Piezas", "+ Brochas", "Con Estuche")]),
    ]),
    dict(name="Computación", traffic=1.3, share=1.0, used=0.15, ship=0.6, types=[
        ("Notebook", 800_000, {"Lenovo": 1, "Hp": 1, "Dell": 2, "Asus": 1, "Acer": 1, "Apple": 2},
         {"Lenovo": ("Ideapad 3", "Thinkpad E14", "Legion 5", "V15"), "Hp": ("Pavilion 15", "Victus 15", "250 G9"),
          "Dell": ("Inspiron 15", "Vostro 3520", "Xps 13"), "Asus": ("Vivobook 15", "Tuf Gaming F15", "Zenbook 14"),
          "Acer": ("Aspire 5", "Nitro 5", "Aspire 3"), "Apple": ("Macbook Air M1", "Macbook Air M2", "Macbook Pro M3")},
         [("Intel Core I3", "Intel Core I5", "Intel Core I7", "Ryzen 5", "Ryzen 7"), ("8gb", "16gb", "32gb"),
          ("256gb Ssd", "512gb Ssd", "1tb Ssd"), ("15.6", "14", "Full Hd")]),
        ("Monitor", 220_000, {"Samsung": 1, "Lg": 1, "Philips": 0, "Gigabyte": 1, "Asus": 1, "Dell": 2},
         ("@##@###", "##@@###@", "G##@", "Ultragear ##"),
         [("22 Pulgadas", "24 Pulgadas", "27 Pulgadas", "32 Pulgadas"), ("Full Hd", "2k", "4k"),
          ("75hz", "144hz", "165hz"), ("Hdmi", "Ips", "Curvo")]),
        ("Teclado Mecánico", 45_000, {"Redragon": 0, "Logitech": 1, "Razer": 2, "Hyperx": 1},
         {"Redragon": ("Kumara K552", "Fizz K617"), "Logitech": ("G413", "G Pro"),
          "Razer": ("Blackwidow V3", "Huntsman Mini"), "Hyperx": ("Alloy Origins", "Alloy Core")},
         [("Rgb", "Switch Red", "Switch Blue"), ("Español", "Inglés")]),
        ("Mouse Inalámbrico", 15_000, {"Logitech": 1, "Genius": 0, "Microsoft": 1, "Razer": 2},
         ("M170", "M280", "Mx Master 3s", "Basilisk X", "Nx-7000"),
         [("Negro", "Gris", "Rosa"), ("1600 Dpi", "Silencioso", "Bluetooth")]),
        ("Disco Sólido Ssd", 40_000, {"Kingston": 1, "Samsung": 2, "Western Digital": 1, "Crucial": 1, "Adata": 0},
         ("A400", "870 Evo", "Green", "Mx500", "Su650", "Nv2"),
         [("240gb", "480gb", "500gb", "1tb", "2tb"), ("Sata", "M.2 Nvme", "2.5")]),
        ("Impresora", 180_000, {"Epson": 1, "Hp": 1, "Brother": 1, "Canon": 1},
         ("Ecotank L3250", "L3210", "Deskjet 2775", "Dcp-t420w", "Pixma G3110"),
         [("Multifunción", "Sistema Continuo", "Wifi", "Color")]),
    ]),
    dict(name="Electrodomésticos y Aires Ac.", traffic=1.2, share=1.0, used=0.08, ship=0.4, types=[
        ("Heladera", 900_000, {"Samsung": 2, "Lg": 2, "Whirlpool": 1, "Gafa": 1, "Patrick": 0, "Drean": 1},
         ("@@-###", "Rt##@", "Wrm##", "Hpk###"),
         [("No Frost", "Cíclica", "Con Freezer"), ("250 Litros", "300 Litros", "400 Litros"),
          ("Inoxidable", "Blanca", "Inverter")]),
        ("Lavarropas", 600_000, {"Drean": 1, "Samsung": 2, "Lg": 2, "Whirlpool": 1, "Electrolux": 1},
         ("Next 8.14", "Concept 5.05", "Ww##@", "Wnq##"),
         [("Carga Frontal", "Carga Superior"), ("6 Kg", "8 Kg", "10 Kg"), ("800 Rpm", "1400 Rpm", "Inverter")]),
        ("Microondas", 130_000, {"Bgh": 1, "Samsung": 1, "Atma": 0, "Philco": 0, "Whirlpool": 1},
         ("Quick Chef", "Me##@", "Md####"),
         [("20 Litros", "23 Litros", "28 Litros", "Grill"), ("Digital", "Blanco", "Negro", "Inoxidable")]),
        ("Aire Acondicionado Split", 800_000, {"Bgh": 1, "Samsung": 2, "Lg": 2, "Surrey": 1, "Philco": 0, "Hitachi": 1},
         ("Silent Air", "Windfree", "Dual Cool", "Pro ###"),
         [("Frío/Calor", "Frío Solo"), ("2250 Frigorías", "3000 Frigorías", "4500 Frigorías", "6000 Frigorías"),
          ("Inverter", "On/Off")]),
        ("Cafetera", 100_000, {"Oster": 1, "Philips": 1, "Nespresso": 2, "Dolce Gusto": 1, "Atma": 0, "Peabody": 0},
         ("Essenza Mini", "Genio S", "Prima Latte", "Piccolo Xs", "Ca####"),
         [("Express", "De Filtro", "De Cápsulas"), ("15 Bar", "19 Bar", "1.2 Litros")]),
        ("Licuadora", 45_000, {"Oster": 1, "Philips": 1, "Liliana": 0, "Atma": 0, "Peabody": 0},
         ("Blstmg", "Pro ###", "Lm###", "Li###"),
         [("600w", "800w", "1000w"), ("Vaso De Vidrio", "Jarra 1.5 Litros", "+ Procesadora"), ("5 Velocidades",)]),
        ("Pava Eléctrica", 25_000, {"Philips": 1, "Atma": 0, "Smartlife": 0, "Peabody": 0, "Oster": 1},
         ("Pe###", "Hd93##", "Sl-ek##"),
         [("1.5 Litros", "1.7 Litros"), ("Acero Inoxidable", "Con Control De Temperatura", "Para Mate")]),
    ]),
    dict(name="Ropa y Accesorios", traffic=1.1, share=1.2, used=0.05, ship=0.15, types=[
        ("Remera", 12_000, {"Adidas": 1, "Nike": 1, "Puma": 1, "Kosiuko": 1, "Levi's": 1},
         ("Básica", "Oversize", "Estampada", "Deportiva", "Lisa"),
         [("Hombre", "Mujer", "Niño"), _TALLES, ("Algodón", "Negra", "Blanca", "Gris")]),
        ("Campera", 70_000, {"Adidas": 1, "Nike": 2, "The North Face": 2, "Montagne": 1, "Kosiuko": 1},
         ("Inflable", "Rompevientos", "De Cuero", "Polar", "Parka"),
         [("Hombre", "Mujer"), ("Impermeable", "Con Capucha", "Térmica"), _TALLES]),
        ("Jean", 40_000, {"Levi's": 2, "Wrangler": 1, "Kosiuko": 1, "Wanama": 1},
         ("501", "Mom", "Skinny", "Recto", "Oxford"),
         [("Hombre", "Mujer"), ("Talle 38", "Talle 40", "Talle 42", "Talle 44"), ("Elastizado", "Tiro Alto", "Roturas")]),
        ("Buzo Con Capucha", 35_000, {"Adidas": 1, "Nike": 2, "Puma": 1, "Kosiuko": 1, "Wanama": 1},
         ("Canguro", "Oversize", "Frisado", "Estampado"), [("Hombre", "Mujer", "Niño"), _TALLES, _COLORS]),
        ("Mochila", 30_000, {"Jansport": 1, "Nike": 1, "Adidas": 1, "Head": 0, "Xtrem": 0},
         ("Superbreak", "Urbana", "Escolar", "Porta Notebook"),
         [("20 Litros", "30 Litros", "15.6"), ("Negra", "Azul", "Gris"), ("Con Carro", "Impermeable")]),
        ("Zapatillas Urbanas", 60_000, {"Vans": 1, "Converse": 1, "Nike": 2, "Adidas": 2, "John Foos": 0},
         {"Vans": ("Old Skool", "Authentic"), "Converse": ("Chuck Taylor", "All Star"), "Nike": ("Air Force 1", "Court Vision"),
          "Adidas": ("Superstar", "Forum Low"), "John Foos": ("182", "Classic")},
         [_CALZADO, ("Hombre", "Mujer", "Unisex"), _COLORS]),
    ]),
    dict(name="Libros, Revistas y Comics", traffic=0.6, share=0.8, used=0.3, ship=0.05, types=[
        ("Libro", 15_000, {"Planeta": 1, "Sudamericana": 1, "Salamandra": 1, "Debolsillo": 0, "Alfaguara": 1},
         ("Cien Años De Soledad - García Márquez", "El Principito - Saint-exupéry",
          "Harry Potter Y La Piedra Filosofal - Rowling", "Rayuela - Julio Cortázar", "Ficciones - Borges",
          "Sapiens - Harari", "Hábitos Atómicos - James Clear", "El Eternauta - Oesterheld", "1984 - Orwell"),
         [("Tapa Blanda", "Tapa Dura", "Edición Bolsillo"), ("En Español",)], True),
        ("Manga", 9_000, {"Ivrea": 1, "Panini": 1},
         ("One Piece Tomo #", "Dragon Ball Tomo #", "Naruto Tomo #", "Chainsaw Man Tomo #", "Attack On Titan Tomo #"),
         [("Edición Argentina", "Tankobon"), ("Nuevo Tomo",)], True),
        ("Cómic", 12_000, {"Ovni Press": 1, "Panini": 1, "Ecc": 1},
         ("Batman: Año Uno", "Watchmen", "Spider-man", "Mafalda Tomo #"), [("Tapa Dura", "Tomo Único")], True),
        ("Revista", 4_000, {"Atlántida": 0, "Perfil": 0},
         ("Billiken", "National Geographic", "Caras", "Gente"), [("Colección", "N° ###"), ("Lote X 10",)], True),
    ]),
    dict(name="Animales y Mascotas", traffic=0.7, share=0.6, used=0.01, ship=0.4, types=[
        ("Alimento Para Perro", 55_000,
         {"Royal Canin": 2, "Pro Plan": 2, "Eukanuba": 2, "Dog Chow": 1, "Pedigree": 1, "Sieger": 1},
         ("Adulto", "Cachorro", "Senior", "Light", "Raza Pequeña", "Raza Mediana"),
         [("3 Kg", "7.5 Kg", "15 Kg", "21 Kg"), ("Pollo", "Carne", "Cordero Y Arroz")]),
        ("Alimento Para Gato", 35_000, {"Royal Canin": 2, "Pro Plan": 2, "Whiskas": 0, "Cat Chow": 1, "Excellent": 1},
         ("Adulto", "Gatito", "Castrado", "Urinary", "Indoor"),
         [("1 Kg", "3 Kg", "7.5 Kg", "10 Kg"), ("Pescado", "Pollo", "Carne")]),
        ("Cucha Para Perro", 40_000, {}, ("Plástica", "De Madera", "Iglú", "Colchón"),
         [("Grande", "Mediana", "Chica", "N° 4"), ("Con Techo", "Lavable", "Impermeable")]),
        ("Rascador Para Gato", 30_000, {}, ("Torre", "Con Cucha", "De Cartón", "Multinivel"),
         [("80 cm", "1.2 Metros", "1.6 Metros"), ("Sisal", "+ Juguete")]),
        ("Piedras Sanitarias", 9_000, {"Pipicat": 1, "Tidy Cats": 1, "Cuidamos": 0},
         ("Clásicas", "Aglomerantes", "Sílica", "Perfumadas"), [("4 Kg", "10 Kg", "20 Kg"), ("Pack X 3",)]),
        ("Collar Para Perro", 8_000, {}, ("Nylon", "Cuero", "Antipulgas", "Con Correa"),
         [("Chico", "Mediano", "Grande"), ("Reflectivo", "Ajustable")]),
    ]),
    dict(name="Accesorios para Vehículos", traffic=0.8, share=0.9, used=0.12, ship=0.35, types=[
        ("Cubierta", 150_000, {"Pirelli": 2, "Bridgestone": 2, "Firestone": 1, "Michelin": 2, "Fate": 1, "Goodyear": 1},
         ("P400 Evo", "Cinturato P1", "Ecopia Ep150", "Energy Xm2", "Eximia", "F-600", "Assurance"),
         [("175/65 R14", "185/60 R15", "195/55 R16", "205/55 R16", "175/70 R13"), ("82t", "88h", "91v"),
          ("Pack X 2", "Pack X 4")]),
        ("Batería Para Auto", 130_000, {"Moura": 1, "Willard": 1, "Bosch": 2, "Varta": 2, "Prestolite": 1},
         ("M22gd", "Ub740", "S4", "12x65"), [("12v 45ah", "12v 65ah", "12v 75ah", "12v 90ah"),
                                            ("Libre Mantenimiento", "Con Instalación")]),
        ("Estéreo", 80_000, {"Pioneer": 1, "Sony": 1, "Jvc": 1, "Kenwood": 1},
         ("Mvh-s215bt", "Dsx-a416bt", "Kd-x272bt", "Dmh-a245bt"),
         [("Bluetooth", "Usb", "Pantalla 7", "Android Auto", "Carplay"), ("1 Din", "2 Din")]),
        ("Lámpara Led Para Auto", 25_000, {"Philips": 1, "Osram": 1}, ("H4", "H7", "H11", "9006"),
         [("6000k", "Cree", "12000 Lúmenes"), ("Kit X 2",)]),
        ("Funda Cubre Asiento", 30_000, {}, ("Universal", "Cuero Ecológico", "Tela", "Deportiva"),
         [("Juego Completo", "Delanteras", "Con Apoyacabezas"), ("Negro", "Gris", "Beige")]),
        ("Cera Para Autos", 10_000, {"Meguiar's": 2, "Turtle Wax": 1, "Toxic Shine": 1, "Simoniz": 0},
         ("Ultimate", "Gold Class", "Carnauba", "Quick Detailer"), [("300 ml", "473 ml", "1 Litro"),
                                                                   ("+ Paño Microfibra",)]),
    ]),
    dict(name="Consolas y Videojuegos", traffic=0.8, share=0.6, used=0.3, ship=0.55, types=[
        ("Consola", 750_000, {"Sony": 2, "Microsoft": 2, "Nintendo": 2},
         {"Sony": ("Playstation 5", "Playstation 4 Slim", "Ps5 Slim", "Ps4 Pro"),
          "Microsoft": ("Xbox Series X", "Xbox Series S", "Xbox One S"), "Nintendo": ("Switch Oled", "Switch Lite", "Switch")},
         [("500gb", "825gb", "1tb"), ("+ 2 Joysticks", "+ Juego", "Edición Digital", "Con Lectora")]),
        ("Joystick", 75_000, {"Sony": 2, "Microsoft": 2, "Nintendo": 2, "Redragon": 0},
         {"Sony": ("Dualsense", "Dualshock 4"), "Microsoft": ("Xbox Series Controller",),
          "Nintendo": ("Pro Controller", "Joy-con"), "Redragon": ("Harrow G808", "Saturn")},
         [("Inalámbrico", "Con Cable"), ("Negro", "Blanco", "Rojo")]),
        ("Juego", 45_000, {"Sony": 1, "Ea Sports": 1, "Nintendo": 2, "Ubisoft": 1, "Rockstar": 1},
         {"Sony": ("Gran Turismo 7", "God Of War Ragnarok", "Spider-man 2"), "Ea Sports": ("Ea Fc 24", "Fifa 23"),
          "Nintendo": ("Mario Kart 8 Deluxe", "Zelda Tears Of The Kingdom"),
          "Ubisoft": ("Assassin's Creed Mirage", "Just Dance 2024"), "Rockstar": ("Gta V", "Red Dead Redemption 2")},
         [("Ps5", "Ps4", "Xbox", "Switch"), ("Físico", "Digital"), ("En Español",)]),
        ("Auriculares Gamer", 40_000, {"Hyperx": 1, "Logitech": 1, "Redragon": 0, "Razer": 2, "Corsair": 2},
         ("Cloud Ii", "Cloud Stinger", "G335", "Zeus H510", "Kraken", "Hs65"),
         [("7.1", "Con Micrófono", "Rgb", "Inalámbricos"), ("Ps4 Pc", "Usb")]),
    ]),
    dict(name="Instrumentos Musicales", traffic=0.5, share=0.6, used=0.3, ship=0.3, types=[
        ("Guitarra Eléctrica", 350_000, {"Fender": 2, "Gibson": 2, "Epiphone": 1, "Squier": 1, "Yamaha": 1},
         ("Stratocaster", "Telecaster", "Les Paul", "Sg", "Pacifica 012"),
         [("Sunburst", "Negra", "Blanca"), ("+ Amplificador", "+ Funda", "Con Cable")]),
        ("Guitarra Criolla", 80_000, {"Yamaha": 1, "Gracia": 0, "Fonseca": 1, "La Alpujarra": 1},
         ("C40", "M1", "Modelo 25", "300"), [("Con Funda", "Para Niño", "Natural", "+ Afinador")]),
        ("Teclado Musical", 180_000, {"Casio": 1, "Yamaha": 1, "Roland": 2, "Korg": 2},
         ("Ct-s300", "Psr-e373", "Go:keys", "Cta-###"), [("61 Teclas", "88 Teclas", "Sensitivo"),
                                                       ("Con Atril", "+ Fuente")]),
        ("Batería Electrónica", 600_000, {"Roland": 2, "Alesis": 1, "Yamaha": 1},
         ("Td-07kv", "Nitro Mesh", "Dtx402k"), [("+ Banqueta", "Con Auriculares", "8 Piezas")]),
        ("Amplificador", 150_000, {"Fender": 2, "Marshall": 2, "Vox": 1, "Boss": 1, "Peavey": 1},
         ("Frontman 10g", "Mg15", "Katana 50", "Pathfinder 10"), [("10w", "20w", "50w"), ("Para Guitarra", "Para Bajo")]),
        ("Micrófono", 45_000, {"Shure": 2, "Behringer": 0, "Audio-technica": 1, "Samson": 1},
         ("Sm58", "Xm8500", "At2020", "Q2u"), [("Dinámico", "Condensador", "Usb"),
                                               ("+ Cable Xlr", "Con Soporte", "+ Pop Filter")]),
    ]),
    dict(name="Alimentos y Bebidas", traffic=0.5, share=0.5, used=0.0, ship=0.1, types=[
        ("Vino Tinto", 8_000, {"Rutini": 2, "Catena Zapata": 2, "Trapiche": 1, "Luigi Bosca": 2, "Norton": 1, "Alamos": 1},
         ("Malbec", "Cabernet Sauvignon", "Blend", "Reserva", "Gran Reserva"), [("750 ml", "Caja X 6", "Pack X 3")]),
        ("Yerba Mate", 4_500, {"Taragüí": 1, "Playadito": 1, "Rosamonte": 1, "Cruz De Malta": 1, "Amanda": 0},
         ("Con Palo", "Sin Palo", "Suave", "Despalada", "Barbacuá"), [("500 g", "1 Kg", "Pack X 5", "Pack X 10")]),
        ("Café En Grano", 15_000, {"Cabrales": 1, "La Virginia": 1, "Lavazza": 2, "Illy": 2, "Bonafide": 1},
         ("Tostado Natural", "Espresso", "Colombia", "Blend Italiano"), [("250 g", "500 g", "1 Kg"), ("Molido",)]),
        ("Cerveza", 2_500, {"Quilmes": 0, "Stella Artois": 1, "Patagonia": 2, "Heineken": 1, "Andes": 1},
         ("Rubia", "Ipa", "Lager", "Negra", "Roja"), [("Lata 473 ml", "Botella 1 Litro", "Pack X 6", "Caja X 24")]),
        ("Aceite De Oliva", 12_000, {"Cocinero": 0, "Zuelo": 2, "Nucete": 1},
         ("Extra Virgen", "Clásico", "Intenso", "Suave"), [("500 ml", "1 Litro", "5 Litros"), ("Lata",)]),
    ]),
    dict(name="Industrias y Oficinas", traffic=0.4, share=0.6, used=0.12, ship=0.2, types=[
        ("Caja De Cartón", 3_000, {}, ("Corrugado", "Para Mudanza", "Embalaje", "Archivo"),
         [("40x30x30", "60x40x40", "50x50x50"), ("Pack X 10", "Pack X 25", "Pack X 50"), ("Doble Onda", "Reforzada")]),
        ("Resma De Papel A4", 9_000, {"Autor": 1, "Boreal": 0, "Ledesma": 1, "Chamex": 1},
         ("75g", "80g", "Multifunción"), [("500 Hojas", "Caja X 10", "Pack X 5")]),
        ("Silla De Oficina", 120_000, {"Baires4": 0, "Mobilarg": 1, "Platinum": 0, "Herman Miller": 2},
         ("Ergonómica", "Ejecutiva", "Gamer", "Mesh"),
         [("Con Apoyabrazos", "Giratoria", "Reclinable", "Con Cabezal"), ("Negra", "Gris")]),
        ("Cinta De Embalar", 6_000, {"3m": 1, "Tacsa": 0, "Rapifix": 0}, ("Transparente", "Marrón", "Con Logo"),
         [("48mm X 100m", "48mm X 50m"), ("Pack X 6", "Pack X 36")]),
        ("Escritorio", 110_000, {"Centro Estant": 0, "Platinum": 0, "Mobilarg": 1},
         ("En L", "Gamer", "Nórdico", "Melamina"),
         [("100 cm", "120 cm", "140 cm"), ("Con Cajones", "Con Estante"), ("Blanco", "Negro", "Roble")]),
        ("Etiquetadora", 60_000, {"Brother": 1, "Dymo": 1, "Zebra": 2}, ("Pt-h110", "Letratag", "Gk420t", "Zd220"),
         [("Térmica", "Portátil", "+ Rollo")]),
    ]),
    dict(name="Arte, Librería y Mercería", traffic=0.4, share=0.5, used=0.03, ship=0.1, types=[
        ("Cuaderno", 3_500, {"Rivadavia": 1, "Gloria": 0, "Éxito": 1, "Ledesma": 1, "Oxford": 2},
         ("Tapa Dura", "Universitario", "Espiralado", "A4"),
         [("48 Hojas", "84 Hojas", "100 Hojas"), ("Rayado", "Cuadriculado", "Liso")]),
        ("Lápices De Colores", 6_000, {"Faber-castell": 1, "Maped": 1, "Staedtler": 2, "Filgo": 0},
         ("Ecolápices", "Color Peps", "Supersoft", "Largos"),
         [("12 Colores", "24 Colores", "36 Colores", "48 Colores"), ("+ Sacapuntas", "Acuarelables", "Con Estuche")]),
        ("Marcadores", 8_000, {"Edding": 1, "Sharpie": 1, "Faber-castell": 1, "Filgo": 0, "Posca": 2},
         ("Permanentes", "Al Agua", "Fibras", "Pc-5m"), [("X 12", "X 24", "Pack X 6"), ("Punta Fina", "Punta Biselada")]),
        ("Máquina De Coser", 250_000, {"Singer": 1, "Brother": 1, "Janome": 2, "Godeco": 0},
         ("Tradition 2250", "Facilita Pro", "Js1400", "Start 8280"),
         [("23 Puntadas", "Portátil", "+ Accesorios", "Eléctrica")]),
        ("Pintura Acrílica", 5_000, {"Alba": 1, "Eterna": 0}, ("Profesional", "Decorativa", "Escolar"),
         [("Set X 12", "200 ml", "1 Litro"), ("Colores Surtidos", "Blanco", "Negro")]),
    ]),
]
CATEGORY_NAMES: tuple[str, ...] = tuple(c["name"] for c in _CATEGORIES)

# Words that tell the condition. Real used listings often say nothing (see meli-api-items), so used
# items carry one of these only sometimes, and a few new items carry an ambiguous one.
_USED_WORDS = ("Usado", "Usada", "Reacondicionado", "Impecable", "Como Nuevo", "Poco Uso", "Excelente Estado",
               "Perfecto Estado", "Con Detalle", "Sin Caja", "Seminuevo")
_AMBIGUOUS_WORDS = ("Impecable", "Sin Caja", "Excelente Estado")
_NEW_WORDS = ("Nuevo", "Original", "Sellado", "En Caja", "Garantía Oficial", "Nueva Temporada", "Oficial")
_PROMO_WORDS = ("Oferta", "Liquidación", "Promo", "Últimas Unidades", "Outlet")
_TIER_PRICE = (0.7, 1.0, 1.6)
# Title words that move the price (so price is partly readable from the title).
_PRICE_WORDS = {
    "pro": 1.35, "max": 1.3, "ultra": 1.6, "plus": 1.15, "profesional": 1.3, "mini": 0.75, "lite": 0.75,
    "oferta": 0.85, "liquidación": 0.8, "promo": 0.85, "outlet": 0.75, "pack": 2.2, "caja": 1.8, "kit": 1.3,
    "256gb": 1.2, "512gb": 1.4, "1tb": 1.6, "2tb": 2.0, "16gb": 1.2, "32gb": 1.35, "i7": 1.35, "inverter": 1.3,
    "4k": 1.3, "+": 1.2, "king": 1.4, "queen": 1.2, "oled": 1.2, "original": 1.1,
}
_FREE_SHIPPING_TAG = "Envío Gratis"

# RNG streams: every independent random quantity gets its own stream so that changing one piece of the
# generator (or the chunk size) does not shift the numbers drawn by another.
_STREAM_CATALOG, _STREAM_POPULARITY, _STREAM_USERS, _STREAM_BLOCK = 1, 2, 3, 4
_USERS_PER_BLOCK = 2048  # fixed: output must not depend on chunk_clicks

# Behaviour knobs (why these values: see module docstring / tests).
_ZIPF_EXPONENT = 1.05          # popularity ~ 1 / rank^a within a category
_MEAN_SESSION_CLICKS = 6.0     # median events per session before the 30-min cut
_P_REPEAT = 0.2                # a click re-views a product already seen in the session
_P_SAME_TYPE = 0.45            # in-category click stays on the session's product type
_MIN_SESSION_GAP_S = 31 * 60   # generated sessions are separated by more than the default 30-min cut


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _resolved(spec: SynthSpec) -> tuple[int, int, int]:
    """(n_clicks, n_users, n_categories) after defaults and sanity limits."""
    if spec.n_clicks < 1 or spec.n_products < 1 or spec.days < 1 or spec.chunk_clicks < 1:
        raise ValueError(f"n_clicks, n_products, days and chunk_clicks must be >= 1: {spec}")
    n_users = spec.n_users if spec.n_users is not None else max(1, spec.n_clicks // 40)
    n_users = max(1, min(n_users, spec.n_clicks))  # every user has at least one click
    k = len(_CATEGORIES) if spec.n_categories is None else spec.n_categories
    k = max(1, min(k, len(_CATEGORIES), spec.n_products))
    return spec.n_clicks, n_users, k


# --------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------
def _fill(pattern: str, code: int) -> str:
    """Replace '#' by digits and '@' by letters taken from `code` (deterministic per product)."""
    if "#" not in pattern and "@" not in pattern:
        return pattern
    out = []
    for ch in pattern:
        if ch == "#":
            code, d = divmod(code, 10)
            out.append(str(d))
        elif ch == "@":
            code, d = divmod(code, 26)
            out.append(chr(97 + d))
        else:
            out.append(ch)
    word = "".join(out)
    return word[:1].upper() + word[1:]  # sellers' Title Case: "Ds-2ce16d", "Rt38k"


def _pick(options, u: float):
    return options[min(int(u * len(options)), len(options) - 1)]


def _title(cat: dict, u: list[float], code: int, used: bool) -> tuple[str, float, int]:
    """One product title from the category vocabulary; returns (title, type median price, brand tier).

    `u` holds the product's pre-drawn uniforms, so the Python work here consumes no RNG state.
    """
    types = cat["types"]
    t = types[min(int(u[0] ** 1.3 * len(types)), len(types) - 1)]  # earlier types are more common
    noun, median, brands, models, pools = t[:5]
    brand_last = len(t) > 5 and t[5]
    brand, tier = None, 0
    if brands and u[1] > 0.1:  # ~10% unbranded ("genérico") listings even for branded goods
        brand = _pick(list(brands), u[2])
        tier = brands[brand]
    model = None
    if isinstance(models, dict):
        if brand is not None:
            model = _pick(models[brand], u[3])
    elif models and (brand_last or u[4] > 0.15):  # a book title is never left out
        model = _pick(models, u[3])
    if model is not None:
        model = _fill(model, code)
    attrs = [_fill(_pick(pool, u[6 + 2 * i]), code >> (8 * i)) for i, pool in enumerate(pools[:5]) if u[5 + 2 * i] < 0.7]

    parts = [noun]
    if brand_last:  # books: "Libro Rayuela - Julio Cortázar - Alfaguara Tapa Blanda"
        parts += [model] if model else []
        parts += ["-", brand] if brand else []
    else:
        parts += [brand] if brand else []
        parts += [model] if model else []
    if attrs:
        if len(attrs) >= 2 and u[15] < 0.12:   # "Negro/Azul", "128gb/4gb Ram"
            attrs[-2:] = [attrs[-2] + "/" + attrs[-1]]
        if u[16] < 0.2:                        # "... Galaxy A54 - 128gb Negro"
            parts.append("-")
        parts += attrs

    # Condition words: the latent label leaks into the title only sometimes (and sometimes wrongly).
    cond_word = None
    if used and u[17] < 0.6:
        cond_word = _pick(_USED_WORDS, u[18])
    elif not used and u[17] < 0.02:
        cond_word = _pick(_AMBIGUOUS_WORDS, u[18])
    elif not used and u[17] > 0.75:
        cond_word = _pick(_NEW_WORDS, u[18])
    if cond_word:
        if u[19] < 0.25:
            parts.insert(1, cond_word)  # "Celular Usado Samsung ..."
        else:
            parts.append(cond_word)
    if u[20] < 0.06:
        parts.append(_pick(_PROMO_WORDS, u[21]))

    title = " ".join(parts)
    if u[22] < 0.05:      # sellers' casing habits: normalization must cope
        title = title.lower()
    elif u[22] > 0.97:
        title = title.upper()
    return title, float(median), tier


def _price_multiplier(title: str) -> float:
    m = 1.0
    for tok in set(title.lower().replace("/", " ").split()):
        m *= _PRICE_WORDS.get(tok, 1.0)
    return m


def make_catalog(spec: SynthSpec) -> pd.DataFrame:
    """Products with titles and noisy downstream labels.

    Columns: product_id (str), title (str), category (str), condition ("new"/"used"),
    free_shipping (bool), price (float). Deterministic for `spec.seed`, independent of click settings.
    """
    _, _, k = _resolved(spec)
    n = spec.n_products
    cats = _CATEGORIES[:k]
    rng = _rng(spec.seed, _STREAM_CATALOG)

    # Category per product; the first k products guarantee that no category is empty.
    share = np.array([c["share"] for c in cats])
    cat_of = np.concatenate([np.arange(min(k, n)), rng.choice(k, size=n - min(k, n), p=share / share.sum())])
    cat_of = rng.permutation(cat_of)
    used_rate = np.array([c["used"] for c in cats])
    used = rng.random(n) < used_rate[cat_of]
    uniforms = rng.random((n, 24)).tolist()
    codes = rng.integers(0, 2**62, size=n).tolist()

    titles, medians, tiers = [], np.empty(n), np.empty(n)
    for i in range(n):
        t, med, tier = _title(cats[cat_of[i]], uniforms[i], codes[i], bool(used[i]))
        titles.append(t)
        medians[i], tiers[i] = med, tier

    # Price: type median x brand tier x title words x condition, with multiplicative noise.
    mult = np.array([_price_multiplier(t) for t in titles])
    price = medians * np.take(_TIER_PRICE, tiers.astype(int)) * mult * np.where(used, 0.62, 1.0)
    price *= rng.lognormal(0.0, 0.3, n)
    price = np.where(price >= 1000, np.round(price, -1), np.round(price, 2))

    # Free shipping: more likely for premium brands, pricey items, some categories; less for used.
    ship_bias = np.array([c["ship"] for c in cats])[cat_of]
    logit = (-0.2 + ship_bias + 0.7 * (tiers - 1) + 1.1 * np.clip(np.log(price / 30_000), -3, 3)
             - 0.6 * used + rng.normal(0.0, 0.6, n))
    free_shipping = rng.random(n) < 1 / (1 + np.exp(-logit))
    # A few sellers advertise it in the title (and a few stale titles still do after it ended).
    tag = np.where(free_shipping, rng.random(n) < 0.08, rng.random(n) < 0.005)
    titles = [f"{t} {_FREE_SHIPPING_TAG}" if g else t for t, g in zip(titles, tag.tolist())]

    # Unique MercadoLibre-like ids: site + 10 digits.
    ids = rng.choice(9_000_000_000, size=n, replace=False) + 1_000_000_000
    return pd.DataFrame({
        "product_id": [f"{spec.site}{x}" for x in ids.tolist()],
        "title": titles,
        "category": [cats[c]["name"] for c in cat_of.tolist()],
        "condition": np.where(used, "used", "new").astype(object),
        "free_shipping": free_shipping.astype(bool),
        "price": price.astype(float),
    })


# --------------------------------------------------------------------------------------------------
# Click model: sampling groups of products with Zipf popularity
# --------------------------------------------------------------------------------------------------
class _ClickModel:
    """Precomputed sampling structures for one catalog.

    Products are organised in groups of three families: category, (category, product type) and
    (category, used). All groups share one concatenated CDF whose group g spans the values (g, g+1], so
    a single `searchsorted(cdf, g + u)` draws a product from any mix of groups in one vectorized call.
    """

    def __init__(self, catalog: pd.DataFrame, spec: SynthSpec):
        n = len(catalog)
        if n == 0:
            raise ValueError("catalog is empty")
        cat_code, cat_names = pd.factorize(catalog["category"], sort=False)
        k = len(cat_names)
        self.n_categories = k
        rng = _rng(spec.seed, _STREAM_POPULARITY)

        # Zipf popularity by a random rank within the category; free shipping nudges products up.
        fs = catalog["free_shipping"].to_numpy(bool) if "free_shipping" in catalog else np.zeros(n, bool)
        key = rng.random(n) - 0.15 * fs
        order = np.lexsort((key, cat_code))
        first = np.searchsorted(cat_code[order], np.arange(k))
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - first[cat_code[order]]
        pop = (rank + 1.0) ** -_ZIPF_EXPONENT

        # Product type = first title word (works for any catalog, not only ours).
        first_word = catalog["title"].astype(str).str.split(n=1).str[0].str.lower().fillna("")
        type_code, _ = pd.factorize(first_word, sort=False)
        _, type_group = np.unique(cat_code.astype(np.int64) * (type_code.max() + 1) + type_code, return_inverse=True)
        n_types = int(type_group.max()) + 1
        used = (catalog["condition"].to_numpy() == "used") if "condition" in catalog else np.zeros(n, bool)

        # Global group ids: [0, k) categories, [k, k+T) types, then one "used" group per category that has any.
        self.cat_group = np.arange(k)
        self.type_group_of = (k + type_group).astype(np.int64)
        has_used = np.bincount(cat_code[used], minlength=k) > 0
        used_ids = np.cumsum(has_used) - 1 + k + n_types
        self.used_group = np.where(has_used, used_ids, self.cat_group)  # fall back to the whole category

        members, cdfs, last = [], [], []
        for grp, mask in ((cat_code, None), (k + type_group, None), (used_ids[cat_code], used)):
            idx = np.flatnonzero(mask) if mask is not None else np.arange(n)
            g = grp[idx] if mask is not None else grp
            if len(idx) == 0:  # e.g. no used items at all
                continue
            o = np.argsort(g, kind="stable")
            idx, g = idx[o], g[o]
            w = pop[idx]
            cs = np.cumsum(w)
            starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
            ends = np.r_[starts[1:], len(g)] - 1
            before = np.repeat(np.r_[0.0, cs[ends[:-1]]], ends - starts + 1)
            total = np.repeat(cs[ends] - np.r_[0.0, cs[ends[:-1]]], ends - starts + 1)
            frac = (cs - before) / total
            frac[ends] = 1.0
            members.append(idx)
            cdfs.append(g + frac)
            last.append((g[ends], ends))
        offs = np.cumsum([0] + [len(m) for m in members])
        self.members = np.concatenate(members).astype(np.int32)
        self.cdf = np.concatenate(cdfs)
        n_groups = k + n_types + int(has_used.sum())
        self.group_last = np.zeros(n_groups, np.int64)  # guards u -> 1.0 rounding at a group's end
        for (gids, ends), off in zip(last, offs):
            self.group_last[gids] = ends + off

        # Sessions' main categories follow traffic (built-in weights, else 1) x sqrt(category size).
        builtin = {c["name"]: c["traffic"] for c in _CATEGORIES}
        traffic = np.array([builtin.get(str(c), 1.0) for c in cat_names]) * np.sqrt(np.bincount(cat_code, minlength=k))
        self.cat_cdf = np.cumsum(traffic / traffic.sum())
        self.cat_cdf[-1] = 1.0

        # Arrow columns to gather from (take() is vectorized; no per-click Python strings).
        self.product_id = pa.array(catalog["product_id"].astype(str).tolist(), pa.string())
        self.title = pa.array(catalog["title"].astype(str).tolist(), pa.string())
        self.category = pa.array(catalog["category"].astype(str).tolist(), pa.string())

    def draw_category(self, u: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cat_cdf, u, side="right"), self.n_categories - 1)

    def draw_product(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        q = group + u
        # Searching sorted queries is ~3x faster than random ones (cache-friendly); argsort pays for itself.
        order = np.argsort(q)
        pos = np.empty(len(q), np.int64)
        pos[order] = np.searchsorted(self.cdf, q[order], side="right")
        return self.members[np.minimum(pos, self.group_last[group])]


def _user_click_counts(spec: SynthSpec) -> np.ndarray:
    """Clicks per user (heavy-tailed activity), summing exactly to n_clicks; O(n_users) memory."""
    n_clicks, n_users, _ = _resolved(spec)
    rng = _rng(spec.seed, _STREAM_USERS)
    w = rng.lognormal(0.0, 1.0, n_users)
    w = np.minimum(w, 50 * w.mean())  # no single user dominates a small log
    extra = rng.multinomial(n_clicks - n_users, w / w.sum()) if n_clicks > n_users else np.zeros(n_users, np.int64)
    return (1 + extra).astype(np.int64)


def _segment_start(flags: np.ndarray) -> np.ndarray:
    """For each position, the index of the most recent True in `flags` (flags[0] must be True)."""
    return np.maximum.accumulate(np.where(flags, np.arange(len(flags)), 0))


def _gen_block(model: _ClickModel, counts: np.ndarray, first_user: int, window_s: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """All clicks of one block of users: (global user index, seconds from start, product index, n sessions)."""
    n_u = len(counts)
    n = int(counts.sum())
    user = np.repeat(np.arange(n_u), counts)
    ustart = np.cumsum(counts) - counts
    pos = np.arange(n) - ustart[user]

    # --- users: favourite categories, session-length propensity, interest in used items
    fav1 = model.draw_category(rng.random(n_u))
    fav2 = model.draw_category(rng.random(n_u))
    p_new_session = 1.0 / (1.0 + rng.lognormal(np.log(_MEAN_SESSION_CLICKS - 1), 0.6, n_u))
    used_affinity = np.where(rng.random(n_u) < 0.15, 0.5, 0.03)

    # --- sessions: each click after a user's first starts a new session with the user's probability
    new_sess = (pos == 0) | (rng.random(n) < p_new_session[user])
    sess = np.cumsum(new_sess) - 1
    sess_first = np.flatnonzero(new_sess)
    n_s = len(sess_first)
    s_user = user[sess_first]
    r = rng.random((4, n_s))
    main = np.where(r[0] < 0.6, fav1[s_user], np.where(r[1] < 0.65, fav2[s_user], model.draw_category(r[2])))
    purity = 0.6 + 0.35 * rng.beta(4.0, 2.0, n_s)   # share of in-category clicks, mean ~0.83
    used_seek = r[3] < used_affinity[s_user]

    # --- products. The session's first click (the "anchor") comes from the main category; later ones
    # stay on the anchor's product type, on used items, on the whole category, or wander off.
    anchor = model.draw_product(model.cat_group[main], rng.random(n_s))
    # Repeated views: re-open the previous product or any earlier one in the same session.
    pos_in_sess = np.arange(n) - sess_first[sess]
    d = rng.random((3, n))
    repeat = (pos_in_sess > 0) & (d[0] < _P_REPEAT)
    # Fresh draws only for the clicks that are neither anchors nor repeats (sampling is the hot spot).
    fresh = np.flatnonzero(~new_sess & ~repeat)
    f_sess, f_user = sess[fresh], user[fresh]
    c = rng.random((5, len(fresh)))
    s_main = main[f_sess]
    in_cat = c[0] < purity[f_sess]
    same_type = in_cat & (c[1] < _P_SAME_TYPE)
    want_used = in_cat & ~same_type & (c[1] < _P_SAME_TYPE + 0.35) & used_seek[f_sess]
    off_cat = np.where(c[2] < 0.4, fav2[f_user], model.draw_category(c[3]))
    group = np.where(in_cat, model.cat_group[s_main], model.cat_group[off_cat])
    group = np.where(same_type, model.type_group_of[anchor[f_sess]], group)
    group = np.where(want_used, model.used_group[s_main], group)
    prod = np.empty(n, np.int32)
    prod[fresh] = model.draw_product(group, c[4])
    prod[sess_first] = anchor

    src = np.where(d[1] < 0.5, np.arange(n) - 1, sess_first[sess] + (d[2] * pos_in_sess).astype(np.int64))
    ptr = np.where(repeat, src, np.arange(n))
    while True:  # pointer jumping resolves chains of repeats in O(log chain) passes
        nxt = ptr[ptr]
        if np.array_equal(nxt, ptr):
            break
        ptr = nxt
    prod = prod[ptr]

    # --- time. Within a session: mostly seconds (lognormal, median 25 s), some multi-minute pauses, a
    # few 25-45 min pauses that straddle the 30-min cut. Between sessions: > 31 min, hours to days.
    g = rng.random((2, n))
    gap = np.clip(rng.lognormal(np.log(25.0), 1.0, n), 1.0, 900.0)
    gap = np.where(g[0] > 0.93, 180.0 + 1020.0 * g[1], gap)
    gap = np.where(g[0] > 0.985, 1500.0 + 1200.0 * g[1], gap)
    gap[new_sess] = 0.0
    dur = np.bincount(sess, weights=gap, minlength=n_s)
    n_sess_u = np.bincount(s_user, minlength=n_u)
    # Each user's sessions spread over a random share of the window; the slack left after the session
    # durations and the minimum gaps is split between the inter-session gaps with lognormal weights.
    budget = window_s * rng.uniform(0.2, 0.97, n_u)
    slack = np.maximum(budget - np.bincount(s_user, weights=dur, minlength=n_u) - (n_sess_u - 1) * _MIN_SESSION_GAP_S, 0)
    first_of_user = pos[sess_first] == 0
    w = np.where(first_of_user, 0.0, rng.lognormal(0.0, 1.2, n_s))
    w_tot = np.bincount(s_user, weights=w, minlength=n_u)
    between = np.where(first_of_user, 0.0,
                       _MIN_SESSION_GAP_S + slack[s_user] * w / np.where(w_tot > 0, w_tot, 1.0)[s_user])
    gap[sess_first] = between
    cs = np.cumsum(gap)
    t_rel = cs - cs[ustart][user]
    span = t_rel[ustart + counts - 1]
    # The rare hyperactive user whose minimum gaps alone exceed the window is compressed into it.
    limit = window_s * 0.999
    scale = np.where(span > limit, limit / np.maximum(span, 1e-9), 1.0)
    offset = rng.random(n_u) * (window_s - span * scale)
    t = offset[user] + t_rel * scale[user]
    return user + first_user, t, prod, n_s


def _start_ms(spec: SynthSpec) -> int:
    ts = pd.Timestamp(spec.start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _iter_batches(spec: SynthSpec, catalog: pd.DataFrame | None, stats: dict) -> Iterator[pa.RecordBatch]:
    n_clicks, n_users, _ = _resolved(spec)
    if catalog is None:
        catalog = make_catalog(spec)
    model = _ClickModel(catalog, spec)
    counts = _user_click_counts(spec)
    start_ms = _start_ms(spec)
    window_ms = spec.days * 86_400_000
    site = pa.scalar(spec.site, pa.string())
    chunk = int(spec.chunk_clicks)
    stats.update(n_users=n_users, n_sessions=0, n_categories=model.n_categories, n_products=len(catalog))

    def to_batch(user: np.ndarray, t: np.ndarray, prod: np.ndarray) -> pa.RecordBatch:
        ms = np.minimum(start_ms + np.floor(t * 1000.0).astype(np.int64), start_ms + window_ms - 1)
        u0, u1 = int(user[0]), int(user[-1])
        # Users are contiguous in a batch, so their ids are formatted once per user, then gathered.
        uid = pa.array([f"U{i:09d}" for i in range(u0, u1 + 1)], pa.string()).take(pa.array(user - u0))
        idx = pa.array(prod)
        return pa.RecordBatch.from_arrays(
            [uid, pa.array(ms, CLICK_SCHEMA.field("ts").type), model.product_id.take(idx),
             model.title.take(idx), model.category.take(idx), pa.repeat(site, len(prod))],
            schema=CLICK_SCHEMA)

    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_pending = 0
    for b, lo in enumerate(range(0, n_users, _USERS_PER_BLOCK)):
        blk = counts[lo:lo + _USERS_PER_BLOCK]
        user, t, prod, n_s = _gen_block(model, blk, lo, window_ms / 1000.0, _rng(spec.seed, _STREAM_BLOCK, b))
        stats["n_sessions"] += n_s
        pending.append((user, t, prod))
        n_pending += len(user)
        last_block = lo + _USERS_PER_BLOCK >= n_users
        if n_pending < chunk and not last_block:
            continue
        user, t, prod = (np.concatenate(a) for a in zip(*pending))
        cut = 0
        while n_pending - cut >= chunk or (last_block and cut < n_pending):
            end = min(cut + chunk, n_pending)
            yield to_batch(user[cut:end], t[cut:end], prod[cut:end])
            cut = end
        pending = [(user[cut:], t[cut:], prod[cut:])] if cut < n_pending else []
        n_pending -= cut
    assert n_pending == 0


def iter_click_batches(spec: SynthSpec, catalog: pd.DataFrame | None = None) -> Iterator[pa.RecordBatch]:
    """Stream the click log as Arrow record batches of at most `spec.chunk_clicks` rows.

    Columns (CLICK_SCHEMA): user_id, ts (timestamp[ms, UTC] in [start, start+days)), product_id, title,
    category, site. Exactly `spec.n_clicks` rows in total, ordered by user then time. `catalog` defaults
    to `make_catalog(spec)`; any DataFrame with product_id, title, category works (condition and
    free_shipping are used when present).
    """
    return _iter_batches(spec, catalog, {})


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------
def write_task_tables(catalog: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Downstream task tables: out_dir/tasks/{condition,free_shipping}.parquet (product_id, title, label 0/1)."""
    tasks = Path(out_dir) / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    labels = {
        "condition": (catalog["condition"] == "used").astype("int64"),
        "free_shipping": catalog["free_shipping"].astype(bool).astype("int64"),
    }
    paths = {}
    for name, label in labels.items():
        df = pd.DataFrame({"product_id": catalog["product_id"].astype(str), "title": catalog["title"].astype(str),
                           "label": label.to_numpy()})
        path = tasks / f"{name}.parquet"
        with fs.atomic_local_file(path) as tmp:
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
        paths[name] = path
    return paths


def generate(spec: SynthSpec, out_dir: str | Path) -> dict:
    """Write out_dir/clicks/part-NNNNN.parquet (one file per batch), out_dir/products.parquet and the task
    tables; every file and the clicks folder are written aside and swapped into place in one step
(``prodemb.fs``), so a reader never finds them half-written or missing. Returns a summary dict."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = make_catalog(spec)
    products = out / "products.parquet"
    with fs.atomic_local_file(products) as tmp_products:
        pq.write_table(pa.Table.from_pandas(catalog, preserve_index=False), tmp_products)
    tasks = write_task_tables(catalog, out)

    tmp = out / f".clicks.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    stats: dict = {}
    names, rows, nbytes = [], 0, 0
    try:
        for i, batch in enumerate(_iter_batches(spec, catalog, stats)):
            name = f"part-{i:05d}.parquet"
            # zstd halves the files vs snappy at the same speed; the big dictionary page keeps titles
            # dictionary-encoded (100k distinct titles overflow the 1 MB default and fall back to plain).
            # 128k-row groups let readers (Spark, DuckDB) split a file across cores.
            pq.write_table(pa.Table.from_batches([batch]), tmp / name, compression="zstd",
                           dictionary_pagesize_limit=64 << 20, row_group_size=ROW_GROUP_ROWS)
            nbytes += (tmp / name).stat().st_size
            names.append(name)
            rows += batch.num_rows
        fs.replace_dir(tmp, out / "clicks")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - t0
    start = pd.Timestamp(_start_ms(spec), unit="ms", tz="UTC")
    return {
        "n_clicks": rows,
        "n_products": len(catalog),
        "n_users": stats["n_users"],
        "n_sessions_generated": stats["n_sessions"],
        "n_categories": stats["n_categories"],
        "seed": spec.seed,
        "start": start.isoformat(),
        "end": (start + pd.Timedelta(days=spec.days)).isoformat(),
        "site": spec.site,
        "clicks_dir": str(out / "clicks"),
        "files": [str(out / "clicks" / nm) for nm in names],
        "products": str(products),
        "tasks": {k: str(v) for k, v in tasks.items()},
        "bytes": nbytes,
        "seconds": round(seconds, 3),
        "clicks_per_second": round(rows / seconds) if seconds > 0 else None,
        "spec": asdict(spec),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m prodemb.synth", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--clicks", type=int, default=SynthSpec.n_clicks)
    p.add_argument("--products", type=int, default=SynthSpec.n_products)
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--seed", type=int, default=SynthSpec.seed)
    p.add_argument("--days", type=int, default=SynthSpec.days)
    p.add_argument("--start", default=SynthSpec.start)
    p.add_argument("--chunk-clicks", type=int, default=SynthSpec.chunk_clicks)
    a = p.parse_args(argv)
    spec = SynthSpec(n_clicks=a.clicks, n_products=a.products, n_users=a.users, seed=a.seed, days=a.days,
                     start=a.start, chunk_clicks=a.chunk_clicks)
    summary = generate(spec, a.out)
    summary["files"] = f"{len(summary['files'])} files in {summary['clicks_dir']}"
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
