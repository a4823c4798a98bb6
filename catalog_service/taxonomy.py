"""The synthetic catalog's taxonomy, as plain data.

Three levels (``l1 > l2 > l3``) over nine departments. Every leaf (`Leaf`) says how its
products look: the noun used in titles, a pool of realistic brands, which attribute
columns (`ecomrlve.envs.catalog.ATTRIBUTE_COLUMNS`) it has and the values each can take (most
common first), a log-normal price (median dollars, sigma of log price) and a few feature
phrases (lower-case noun phrases that read well both as a bullet and inside a sentence).
A leaf's attribute pools are its whole vocabulary: every value a product of that kind (or one
of its variants) may carry. Every leaf offers a choice on at least one attribute (two or more
values), so every product can have variants.

`IMPLAUSIBLE_VALUES` lists (leaf, attribute, value) triples no product of that kind may
carry (a sleeping bag in size "College Ruled"); the tests check that neither the generator
nor synthesized variants ever produce one.

`PROJECTS` maps shopping projects (used by the bundle environment) to leaf names; every
project has at least 12 leaves. `validate_taxonomy()` checks all of the above and is run
by the tests; nothing here is random.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecomrlve.envs.catalog import ATTRIBUTE_COLUMNS, CATEGORY_SEP

__all__ = [
    "Leaf",
    "LEAVES",
    "PROJECTS",
    "DEPARTMENTS",
    "SERIES_WORDS",
    "DEPARTMENT_FEATURES",
    "CLOSING_SENTENCES",
    "RESELLER_STORES",
    "APPAREL_SIZES",
    "IMPLAUSIBLE_VALUES",
    "leaf_by_name",
    "validate_taxonomy",
]


@dataclass(frozen=True)
class Leaf:
    """One leaf category and how its products are generated.

    `attributes` is a tuple of ``(attribute_column, values)`` pairs; attributes not
    listed are null for this leaf's products. Values are ordered most common first."""

    l1: str
    l2: str
    l3: str
    noun: str
    brands: tuple[str, ...]
    attributes: tuple[tuple[str, tuple[str, ...]], ...]
    price_median: float
    price_sigma: float
    features: tuple[str, ...]

    @property
    def path(self) -> str:
        """``"l1 > l2 > l3"``."""
        return CATEGORY_SEP.join((self.l1, self.l2, self.l3))

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.attributes)

    def attribute_values(self, name: str) -> tuple[str, ...] | None:
        """The value pool of attribute `name`, or None when the leaf lacks it."""
        for attr, values in self.attributes:
            if attr == name:
                return values
        return None


DEPARTMENTS: tuple[str, ...] = (
    "Electronics",
    "Home & Kitchen",
    "Clothing",
    "Beauty",
    "Sports & Outdoors",
    "Office",
    "Toys",
    "Tools",
    "Grocery",
)

# --------------------------------------------------------------------------- value pools

APPAREL_SIZES = ("M", "L", "S", "XL", "XS", "XXL")
SHOE_SIZES = ("9", "10", "8", "9.5", "10.5", "11", "8.5", "7", "7.5", "12", "6", "6.5", "11.5", "13")
BABY_SIZES = ("0-3 Months", "3-6 Months", "Newborn", "6-9 Months", "9-12 Months", "12-18 Months")
BED_SIZES = ("Queen", "King", "Full", "Twin", "California King", "Twin XL")

TECH_COLORS = ("Black", "White", "Space Gray", "Silver", "Blue")
DEVICE_COLORS = ("Black", "White", "Gray", "Blue", "Pink")
HOME_COLORS = ("White", "Black", "Gray", "Beige", "Navy", "Sage Green", "Red")
APPLIANCE_COLORS = ("Black", "Stainless Steel", "White", "Red", "Silver", "Matte Black")
APPAREL_COLORS = (
    "Black", "Navy", "Heather Gray", "White", "Charcoal", "Olive",
    "Royal Blue", "Burgundy", "Red", "Pink",
)
OUTDOOR_COLORS = ("Green", "Blue", "Gray", "Orange", "Black", "Red", "Tan")
NURSERY_COLORS = ("White", "Gray", "Natural", "Sage Green", "Blush Pink", "Espresso")
KIDS_COLORS = ("Blue", "Pink", "Red", "Green", "Purple", "Yellow", "Multicolor")
GYM_COLORS = ("Black", "Purple", "Blue", "Pink", "Gray", "Teal", "Green")

CONNECTORS = ("USB-C", "Lightning", "USB-A", "Micro-USB")
CHARGER_WATTAGE = ("65W", "20W", "30W", "45W", "100W", "140W")
CABLE_WATTAGE = ("60W", "100W", "240W", "15W")
STORAGE_CAPACITY = ("128GB", "256GB", "64GB", "512GB", "1TB", "2TB")
KITCHEN_MATERIALS = ("Stainless Steel", "Nonstick", "Cast Iron", "Ceramic", "Glass")
BODY_SCENTS = ("Unscented", "Lavender", "Vanilla", "Coconut", "Eucalyptus", "Citrus", "Rose", "Sandalwood")
HAIR_SCENTS = ("Coconut", "Argan Oil", "Tea Tree", "Citrus", "Lavender", "Unscented", "Rose")
BABY_SCENTS = ("Unscented", "Lavender", "Chamomile", "Calendula")
KIDS_AGES = ("3-5 Years", "6-8 Years", "8-12 Years", "12+ Years")
BABY_AGES = ("0-12 Months", "1-3 Years")
ALL_AGES = ("3-5 Years", "6-8 Years", "8-12 Years", "12+ Years", "1-3 Years")

# --------------------------------------------------------------------------- brand pools

B_CHARGING = ("Anker", "Belkin", "UGREEN", "Spigen", "Baseus", "Aukey", "Mophie", "Satechi", "INIU", "Scosche")
B_COMPUTER = ("Logitech", "Dell", "HP", "Lenovo", "ASUS", "Acer", "Microsoft", "Razer", "Corsair", "Keychron", "Samsung", "Apple")
B_LAPTOP = ("Dell", "HP", "Lenovo", "ASUS", "Acer", "Apple", "Microsoft", "Samsung", "MSI", "Razer")
B_MONITOR = ("Dell", "LG", "Samsung", "ASUS", "Acer", "BenQ", "HP", "ViewSonic", "Lenovo", "AOC")
B_DESK_ACCESSORY = ("Amazon Basics", "Rain Design", "Nulaxy", "VIVO", "HUANUO", "Satechi", "Twelve South", "Fellowes", "Mount-It!", "Ergotron")
B_STORAGE = ("Samsung", "SanDisk", "Western Digital", "Seagate", "Kingston", "Crucial", "Lexar", "PNY", "Toshiba")
B_AUDIO = ("Sony", "Bose", "JBL", "Sennheiser", "Jabra", "Beats", "Soundcore", "Skullcandy", "Audio-Technica")
B_HEADSET = ("Logitech", "Jabra", "Poly", "HyperX", "SteelSeries", "Corsair", "Sennheiser", "Razer", "Microsoft")
B_WEARABLE = ("Fitbit", "Garmin", "Apple", "Samsung", "Amazfit", "Withings", "Polar", "Xiaomi", "Coros")
B_BABY_TECH = ("Nanit", "Owlet", "Infant Optics", "Motorola", "Eufy", "VTech", "HelloBaby", "Babysense")
B_SMART_HOME = ("Google", "Amazon", "Ring", "Arlo", "Wyze", "Eufy", "TP-Link", "Philips Hue", "Blink", "Kasa")
B_BAKEWARE = ("Nordic Ware", "USA Pan", "Wilton", "OXO", "Pyrex", "Farberware", "Rachael Ray", "Chicago Metallic", "Calphalon", "Fat Daddio's")
B_UTENSILS = ("OXO", "KitchenAid", "Cuisinart", "Farberware", "Zulay", "Joseph Joseph", "Tovolo", "GIR", "Spring Chef", "Le Creuset")
B_APPLIANCE = ("KitchenAid", "Cuisinart", "Hamilton Beach", "Ninja", "Breville", "Instant Pot", "BLACK+DECKER", "Oster", "Dash", "Vitamix", "Keurig")
B_COOKWARE = ("Lodge", "T-fal", "All-Clad", "Calphalon", "Le Creuset", "Cuisinart", "Rachael Ray", "GreenPan", "Tramontina", "Staub")
B_FURNITURE = ("Sauder", "Zinus", "Flash Furniture", "Walker Edison", "Nathan James", "SONGMICS", "VASAGLE", "Yaheetech", "Furinno", "FlexiSpot")
B_LIGHTING = ("Philips", "TaoTronics", "BenQ", "LEPOWER", "Globe Electric", "Brightech", "Lutron", "GE", "Sunbeam", "Amazon Basics")
B_NURSERY = ("Graco", "Delta Children", "DaVinci", "Babyletto", "Dream On Me", "Summer Infant", "Munchkin", "Skip Hop", "Storkcraft", "Newton Baby")
B_BEDDING = ("Utopia Bedding", "Amazon Basics", "Mellanni", "Brooklinen", "Bedsure", "Linenspa", "Pinzon", "Casper", "Burt's Bees Baby", "Parachute")
B_AIR = ("Levoit", "Honeywell", "Vicks", "Pure Enrichment", "Crane", "Dreo", "Elechomes")
B_CANDLES = ("Yankee Candle", "Chesapeake Bay Candle", "Mrs. Meyer's", "Glade", "Homesick", "Paddywax", "Bath & Body Works")
B_MENS = ("Levi's", "Hanes", "Carhartt", "Columbia", "Under Armour", "Nike", "Adidas", "Champion", "Amazon Essentials", "Gildan", "Wrangler")
B_WOMENS = ("Levi's", "Hanes", "Columbia", "Amazon Essentials", "Calvin Klein", "Gap", "Old Navy", "Champion", "Athleta", "Under Armour")
B_ACTIVE = ("Nike", "Adidas", "Under Armour", "Puma", "Reebok", "New Balance", "ASICS", "Champion", "Gymshark", "Lululemon")
B_SHOES = ("Nike", "Adidas", "New Balance", "Skechers", "Brooks", "ASICS", "Merrell", "Timberland", "KEEN", "Salomon", "Columbia")
B_OUTERWEAR = ("The North Face", "Columbia", "Patagonia", "Carhartt", "Marmot", "Arc'teryx", "Helly Hansen", "REI Co-op", "Outdoor Research")
B_DIAPER_BAG = ("Skip Hop", "Itzy Ritzy", "JJ Cole", "Ruvalino", "Hap Tiny", "Eddie Bauer", "Petunia Pickle Bottom", "Freshly Picked")
B_BAGS = ("Under Armour", "Nike", "Adidas", "Gonex", "Samsonite", "Herschel", "JanSport", "Puma")
B_BABY_CLOTHES = ("Carter's", "Gerber", "Burt's Bees Baby", "Hudson Baby", "Simple Joys by Carter's", "Kyte Baby", "Amazon Essentials")
B_SKIN = ("CeraVe", "Neutrogena", "Cetaphil", "La Roche-Posay", "Olay", "Aveeno", "The Ordinary", "Eucerin", "Burt's Bees", "Vaseline")
B_HAIR = ("Pantene", "Dove", "OGX", "Head & Shoulders", "TRESemme", "Garnier Fructis", "Olaplex", "Moroccanoil", "SheaMoisture", "Aussie")
B_HAIR_TOOLS = ("Revlon", "Dyson", "Conair", "BaBylissPRO", "Remington", "T3", "Shark", "Hot Tools")
B_BATH = ("Dove", "Dr. Teal's", "Old Spice", "Native", "Method", "Aveeno", "Olay", "Mrs. Meyer's", "Cetaphil", "Dial")
B_BABY_CARE = ("Johnson's", "Aveeno Baby", "Cetaphil Baby", "Mustela", "Burt's Bees Baby", "Desitin", "Aquaphor", "Babyganics", "Pampers", "Huggies")
B_MAKEUP = ("Maybelline", "L'Oreal Paris", "NYX", "e.l.f.", "Revlon", "CoverGirl", "Fenty Beauty", "Rare Beauty", "Clinique", "Milani")
B_ORAL = ("Philips Sonicare", "Oral-B", "Waterpik", "quip", "Colgate", "AquaSonic")
B_CAMPING = ("Coleman", "REI Co-op", "Kelty", "Marmot", "MSR", "Big Agnes", "NEMO", "TETON Sports", "ALPS Mountaineering", "Black Diamond")
B_LIGHTS = ("Black Diamond", "Petzl", "Fenix", "Energizer", "Nitecore", "BioLite", "Coast", "Streamlight", "Coleman")
B_COOLERS = ("YETI", "Coleman", "Igloo", "RTIC", "Pelican", "Orca", "Stanley", "Engel")
B_PACKS = ("Osprey", "Deuter", "Gregory", "The North Face", "REI Co-op", "Kelty", "TETON Sports", "Mystery Ranch", "CamelBak")
B_BOTTLES = ("Hydro Flask", "YETI", "Stanley", "CamelBak", "Nalgene", "Owala", "Simple Modern", "Contigo", "Thermos")
B_FIRST_AID = ("Adventure Medical Kits", "Surviveware", "Johnson & Johnson", "First Aid Only", "Lifeline", "Swiss Safe")
B_FITNESS = ("Gaiam", "Manduka", "Amazon Basics", "BalanceFrom", "Bowflex", "CAP Barbell", "TRX", "Fit Simplify", "TheraBand", "Yes4All", "TriggerPoint", "Rogue")
B_CARDIO = ("Peloton", "Schwinn", "Sunny Health & Fitness", "YOSUDA", "NordicTrack", "Echelon", "JOROTO", "Bowflex")
B_SHAKER = ("BlenderBottle", "Helimix", "Ice Shaker", "PROMiXX", "Contigo", "Owala")
B_OFFICE_FURNITURE = ("Steelcase", "Herman Miller", "HON", "Branch", "Flash Furniture", "Hbada", "SIHOO", "Staples", "Serta", "Amazon Basics")
B_OFFICE_SUPPLIES = ("Post-it", "Sharpie", "BIC", "Pilot", "Five Star", "Moleskine", "Scotch", "Swingline", "Avery", "Mead", "Pentel", "Paper Mate")
B_ORGANIZERS = ("SimpleHouseware", "mDesign", "Amazon Basics", "Marbrasse", "Officemate", "Fellowes", "Pipishell", "YOSCO")
B_BOARDS = ("Quartet", "VIZ-PRO", "Amazon Basics", "U Brands", "Expo", "Lockways", "Mead")
B_PRINTERS = ("HP", "Canon", "Epson", "Brother", "Xerox", "Pantum")
B_ART = ("Crayola", "Arteza", "Winsor & Newton", "Liquitex", "Prismacolor", "Faber-Castell", "U.S. Art Supply", "Castle Art Supplies")
B_BUILDING = ("LEGO", "MEGA", "Magna-Tiles", "K'NEX", "PicassoTiles", "Melissa & Doug", "Learning Resources", "Tegu")
B_BABY_TOYS = ("Fisher-Price", "VTech", "Melissa & Doug", "Skip Hop", "Baby Einstein", "Munchkin", "Infantino", "Lovevery", "Tiny Love")
B_PLUSH = ("Jellycat", "Gund", "Squishmallows", "Ty", "Melissa & Doug", "Aurora", "Mary Meyer")
B_GAMES = ("Hasbro", "Mattel", "Ravensburger", "Buffalo Games", "Exploding Kittens", "Spin Master", "Asmodee", "Melissa & Doug")
B_OUTDOOR_PLAY = ("Little Tikes", "Step2", "Nerf", "Radio Flyer", "Razor", "Micro Kickboard", "Hover-1")
B_DOLLS = ("Barbie", "Mattel", "Hasbro", "Funko", "Hot Wheels", "Matchbox", "American Girl", "Spin Master")
B_PAINT_SUPPLIES = ("Purdy", "Wooster", "ScotchBlue", "FrogTape", "Warner", "Red Devil", "Shur-Line", "HANDy", "Hyde", "Bates")
B_PAINT = ("Behr", "Sherwin-Williams", "Benjamin Moore", "Valspar", "Glidden", "PPG", "Rust-Oleum", "KILZ")
B_PRIMER = ("KILZ", "Zinsser", "Rust-Oleum", "Behr", "Valspar", "Glidden", "INSL-X")
B_POWER_TOOLS = ("DEWALT", "Milwaukee", "Makita", "BLACK+DECKER", "Ryobi", "Bosch", "Craftsman", "Metabo HPT", "Ridgid", "Porter-Cable")
B_HAND_TOOLS = ("Stanley", "Craftsman", "Klein Tools", "Irwin", "Estwing", "TEKTON", "WORKPRO", "GearWrench", "DEWALT", "Milwaukee")
B_MULTI_TOOLS = ("Leatherman", "Gerber", "Victorinox", "SOG", "RoverTac", "Leatherman", "Swiss Tech")
B_SAFETY = ("3M", "DEWALT", "Honeywell", "Uvex", "MAGID", "G & F", "Mechanix Wear", "Ironclad")
B_LADDERS = ("Little Giant", "Werner", "Louisville Ladder", "Gorilla Ladders", "Cosco", "Xtend & Climb")
B_BAKING_FOOD = ("King Arthur", "Gold Medal", "Bob's Red Mill", "McCormick", "Nielsen-Massey", "Ghirardelli", "Nestle Toll House", "Domino", "Hershey's", "Simply Organic")
B_CAKE_MIX = ("Betty Crocker", "Duncan Hines", "Pillsbury", "King Arthur", "Simple Mills", "Krusteaz")
B_SPRINKLES = ("Wilton", "Sweetapolita", "McCormick", "Supernatural", "Fancy Sprinkles", "Betty Crocker")
B_SNACKS = ("KIND", "Clif Bar", "RXBAR", "Nature Valley", "Planters", "Blue Diamond", "Larabar", "Wonderful", "Kirkland Signature", "Made Good")
B_CHIPS = ("Lay's", "Kettle Brand", "Cape Cod", "Pringles", "Utz", "Miss Vickie's", "Deep River")
B_COFFEE = ("Starbucks", "Peet's", "Lavazza", "Dunkin'", "Death Wish Coffee", "Illy", "Eight O'Clock", "Kicking Horse")
B_TEA = ("Twinings", "Celestial Seasonings", "Bigelow", "Lipton", "Tazo", "Yogi", "Harney & Sons", "Stash")
B_HYDRATION = ("Liquid I.V.", "LMNT", "Gatorade", "Nuun", "Pedialyte", "DripDrop", "Ultima")
B_PROTEIN = ("Optimum Nutrition", "Orgain", "Dymatize", "Garden of Life", "MuscleTech", "Premier Protein", "Vega", "Isopure", "Quest")
B_BABY_FOOD = ("Gerber", "Earth's Best", "Happy Baby", "Plum Organics", "Sprout", "Beech-Nut", "Once Upon a Farm")
B_FORMULA = ("Similac", "Enfamil", "Gerber Good Start", "Earth's Best", "Kendamil", "Bobbie", "Parent's Choice")
B_CAMP_FOOD = ("Mountain House", "Backpacker's Pantry", "Peak Refuel", "Good To-Go", "ReadyWise", "AlpineAire")


def _leaf(l1, l2, l3, noun, brands, attrs, median, sigma, features) -> Leaf:
    return Leaf(
        l1=l1,
        l2=l2,
        l3=l3,
        noun=noun,
        brands=tuple(dict.fromkeys(brands)),
        attributes=tuple((name, tuple(values)) for name, values in attrs.items()),
        price_median=float(median),
        price_sigma=float(sigma),
        features=tuple(features),
    )


E, H, C, B, S, O, T, TL, G = DEPARTMENTS

LEAVES: tuple[Leaf, ...] = (
    # ----------------------------------------------------------------- Electronics
    _leaf(E, "Power & Charging", "Wall Chargers", "Wall Charger", B_CHARGING,
          {"wattage": CHARGER_WATTAGE, "connector_type": ("USB-C", "USB-A"), "color": ("White", "Black")},
          28, 0.45, ("GaN fast charging", "foldable plug", "overheat protection", "compact travel size", "multi-device charging")),
    _leaf(E, "Power & Charging", "Charging Cables", "Charging Cable", B_CHARGING,
          {"wattage": CABLE_WATTAGE, "connector_type": CONNECTORS, "color": TECH_COLORS},
          12, 0.45, ("braided nylon jacket", "fast data transfer", "reinforced strain relief", "tangle-free design", "6 ft length")),
    _leaf(E, "Power & Charging", "Power Banks", "Power Bank", B_CHARGING,
          {"capacity": ("10000mAh", "20000mAh", "5000mAh", "26800mAh"), "wattage": ("20W", "30W", "65W"),
           "connector_type": ("USB-C", "USB-A"), "color": TECH_COLORS},
          35, 0.45, ("high-speed charging", "LED battery indicator", "slim pocket size", "airline approved capacity", "pass-through charging")),
    _leaf(E, "Power & Charging", "Wireless Chargers", "Wireless Charging Pad", B_CHARGING,
          {"wattage": ("15W", "10W", "7.5W"), "color": TECH_COLORS},
          25, 0.4, ("Qi certified charging", "non-slip surface", "case-friendly charging", "soft LED indicator")),
    _leaf(E, "Power & Charging", "Car Chargers", "Car Charger", B_CHARGING,
          {"wattage": ("30W", "20W", "45W", "65W", "100W"), "connector_type": ("USB-C", "USB-A")},
          18, 0.4, ("dual-port charging", "flush-fit design", "smart power distribution", "aluminum alloy shell")),
    _leaf(E, "Power & Charging", "Surge Protectors", "Surge Protector Power Strip", ("Belkin", "Anker", "Amazon Basics", "APC", "Tripp Lite", "GE", "Philips", "Kasa"),
          {"color": ("White", "Black")},
          25, 0.45, ("built-in USB ports", "long extension cord", "flat rotating plug", "wall-mountable design", "high joule rating")),
    _leaf(E, "Computers & Accessories", "Laptops", "Laptop", B_LAPTOP,
          {"screen_size": ("15.6 inch", "14 inch", "13.3 inch", "16 inch", "17.3 inch"),
           "capacity": ("512GB", "256GB", "1TB", "2TB"), "color": ("Silver", "Space Gray", "Black", "Blue")},
          780, 0.5, ("all-day battery life", "backlit keyboard", "full HD display", "fast SSD storage", "lightweight aluminum chassis")),
    _leaf(E, "Computers & Accessories", "Monitors", "Monitor", B_MONITOR,
          {"screen_size": ("27 inch", "24 inch", "32 inch", "34 inch", "22 inch"), "color": ("Black", "White", "Silver")},
          260, 0.5, ("IPS panel", "4K UHD resolution", "height-adjustable stand", "eye-care flicker-free backlight", "USB-C connectivity", "high refresh rate")),
    _leaf(E, "Computers & Accessories", "Keyboards", "Keyboard", ("Logitech", "Microsoft", "Keychron", "Razer", "Corsair", "Apple", "Redragon", "Das Keyboard", "Arteck"),
          {"connector_type": ("USB-C", "USB-A"), "color": TECH_COLORS},
          55, 0.6, ("quiet low-profile keys", "multi-device Bluetooth pairing", "mechanical switches", "rechargeable battery", "full-size layout with number pad")),
    _leaf(E, "Computers & Accessories", "Computer Mice", "Mouse", ("Logitech", "Microsoft", "Razer", "Corsair", "Apple", "SteelSeries", "Anker", "HP"),
          {"connector_type": ("USB-C", "USB-A"), "color": TECH_COLORS},
          30, 0.6, ("ergonomic contoured shape", "silent clicks", "precision optical tracking", "long battery life", "programmable buttons")),
    _leaf(E, "Computers & Accessories", "Webcams", "Webcam", ("Logitech", "Razer", "Microsoft", "Anker", "NexiGo", "Insta360", "Elgato", "AVerMedia"),
          {"connector_type": ("USB-A", "USB-C")},
          65, 0.5, ("1080p HD video", "built-in stereo microphones", "auto light correction", "privacy shutter", "wide field of view")),
    _leaf(E, "Computers & Accessories", "USB Hubs", "USB Hub", ("Anker", "UGREEN", "Satechi", "Belkin", "Plugable", "Sabrent", "Baseus", "Amazon Basics"),
          {"connector_type": ("USB-C", "USB-A"), "color": ("Space Gray", "Silver", "Black")},
          35, 0.45, ("HDMI 4K output", "SD card reader", "100W pass-through charging", "aluminum housing", "plug-and-play setup")),
    _leaf(E, "Computers & Accessories", "Laptop Stands", "Laptop Stand", B_DESK_ACCESSORY,
          {"material": ("Aluminum", "Steel", "Wood"), "color": ("Silver", "Space Gray", "Black")},
          35, 0.45, ("adjustable height", "ventilated design", "foldable for travel", "non-slip silicone pads")),
    _leaf(E, "Computers & Accessories", "Monitor Stands", "Monitor Stand Riser", B_DESK_ACCESSORY,
          {"material": ("Wood", "Bamboo", "Aluminum", "Steel"), "color": ("Black", "Natural", "White", "Walnut")},
          40, 0.5, ("under-stand storage space", "ergonomic eye-level height", "sturdy weight capacity", "cable management slot")),
    _leaf(E, "Data Storage", "External Hard Drives", "Portable External Hard Drive", B_STORAGE,
          {"capacity": ("2TB", "1TB", "4TB", "5TB"), "connector_type": ("USB-A", "USB-C"), "color": ("Black", "Blue", "Silver", "Red")},
          80, 0.35, ("automatic backup software", "password protection", "plug-and-play setup", "shock-resistant design")),
    _leaf(E, "Data Storage", "Portable SSDs", "Portable SSD", B_STORAGE,
          {"capacity": ("1TB", "500GB", "2TB", "4TB"), "connector_type": ("USB-C", "USB-A"), "color": ("Black", "Gray", "Blue")},
          110, 0.4, ("read speeds up to 1050MB/s", "drop-resistant shell", "hardware encryption", "pocket-sized design")),
    _leaf(E, "Data Storage", "USB Flash Drives", "USB Flash Drive", B_STORAGE,
          {"capacity": STORAGE_CAPACITY[:5], "connector_type": ("USB-A", "USB-C")},
          15, 0.5, ("USB 3.2 speed", "retractable connector", "keyring loop", "metal casing")),
    _leaf(E, "Data Storage", "Memory Cards", "microSD Card", B_STORAGE,
          {"capacity": STORAGE_CAPACITY},
          20, 0.55, ("4K video recording", "SD adapter included", "waterproof and temperature-proof", "A2 app performance")),
    _leaf(E, "Headphones & Audio", "Over-Ear Headphones", "Wireless Over-Ear Headphones", B_AUDIO,
          {"color": ("Black", "Silver", "Midnight Blue", "White", "Beige")},
          150, 0.6, ("active noise cancelling", "30-hour battery life", "plush memory foam ear cushions", "multipoint connection", "foldable travel case")),
    _leaf(E, "Headphones & Audio", "Earbuds", "Wireless Earbuds", B_AUDIO,
          {"color": ("Black", "White", "Navy", "Pink")},
          80, 0.6, ("sweat-resistant design", "wireless charging case", "transparency mode", "secure-fit ear tips", "touch controls")),
    _leaf(E, "Headphones & Audio", "Headsets", "Computer Headset with Microphone", B_HEADSET,
          {"connector_type": ("USB-A", "USB-C"), "color": ("Black", "Gray", "White")},
          60, 0.55, ("noise-cancelling boom microphone", "in-line volume control", "lightweight padded headband", "clear voice for video calls")),
    _leaf(E, "Headphones & Audio", "Bluetooth Speakers", "Bluetooth Speaker", B_AUDIO,
          {"color": ("Black", "Blue", "Red", "Gray", "Teal")},
          70, 0.6, ("waterproof IP67 rating", "360-degree sound", "12-hour playtime", "built-in speakerphone")),
    _leaf(E, "Wearables", "Fitness Trackers", "Fitness Tracker", B_WEARABLE,
          {"color": ("Black", "Pink", "Blue", "White", "Gray"), "size": ("S", "L")},
          80, 0.45, ("heart rate monitoring", "sleep tracking", "7-day battery life", "swim-proof design", "built-in GPS")),
    _leaf(E, "Wearables", "Smartwatches", "Smartwatch", B_WEARABLE,
          {"color": ("Black", "Silver", "Rose Gold", "Midnight", "Green"), "size": ("41mm", "45mm", "40mm", "44mm")},
          240, 0.5, ("always-on display", "blood oxygen sensor", "fall detection", "contactless payments", "workout auto-detection")),
    _leaf(E, "Smart Home", "Baby Monitors", "Video Baby Monitor", B_BABY_TECH,
          {"screen_size": ("5 inch", "4.3 inch", "2.8 inch")},
          120, 0.45, ("night vision", "two-way talk", "room temperature sensor", "long-range connection", "lullabies and white noise")),
    _leaf(E, "Smart Home", "Security Cameras", "Security Camera", B_SMART_HOME,
          {"color": ("White", "Black")},
          60, 0.55, ("motion alerts", "color night vision", "weather-resistant housing", "cloud and local storage")),
    _leaf(E, "Smart Home", "Smart Plugs", "Smart Plug", B_SMART_HOME,
          {"color": ("White",), "size": ("2-Pack", "4-Pack", "1-Pack")},
          18, 0.35, ("voice assistant control", "schedules and timers", "energy monitoring", "no hub required")),
    _leaf(E, "Smart Home", "Smart Light Bulbs", "Smart Light Bulb", B_SMART_HOME,
          {"wattage": ("9W", "8.5W", "11W"), "color": ("Multicolor", "Soft White", "Daylight")},
          16, 0.45, ("16 million colors", "dimmable warm to cool light", "app and voice control", "away mode")),
    # ----------------------------------------------------------------- Home & Kitchen
    _leaf(H, "Bakeware", "Baking Sheets", "Baking Sheet", B_BAKEWARE,
          {"material": ("Aluminum", "Nonstick", "Stainless Steel"), "size": ("Half Sheet", "Quarter Sheet", "Jelly Roll")},
          18, 0.4, ("warp-resistant rim", "even heat distribution", "commercial-grade construction", "easy release surface")),
    _leaf(H, "Bakeware", "Cake Pans", "Cake Pan", B_BAKEWARE,
          {"material": ("Nonstick", "Aluminum", "Glass", "Silicone"), "size": ("9 inch", "8 inch", "10 inch")},
          15, 0.4, ("straight sides for layer cakes", "removable bottom", "even browning", "dishwasher safe")),
    _leaf(H, "Bakeware", "Muffin Pans", "Muffin Pan", B_BAKEWARE,
          {"material": ("Nonstick", "Aluminum", "Silicone"), "size": ("12 Cup", "24 Cup", "6 Cup")},
          16, 0.4, ("easy release cups", "sturdy carbon steel", "wide handles", "dishwasher safe")),
    _leaf(H, "Bakeware", "Cooling Racks", "Cooling Rack", B_BAKEWARE,
          {"material": ("Stainless Steel", "Nonstick")},
          14, 0.35, ("oven-safe grid", "raised feet for airflow", "fits half sheet pans", "rust-resistant finish")),
    _leaf(H, "Bakeware", "Pie Dishes", "Pie Dish", B_BAKEWARE,
          {"material": ("Glass", "Ceramic", "Stainless Steel"), "color": ("Clear", "White", "Red", "Blue")},
          16, 0.4, ("fluted edge", "freezer-to-oven safe", "deep dish design", "easy-grip handles")),
    _leaf(H, "Bakeware", "Parchment Paper", "Parchment Paper Sheets", ("Reynolds", "If You Care", "Katbite", "Smartake", "Wilton", "Amazon Basics"),
          {"size": ("Half Sheet", "Quarter Sheet", "Roll")},
          11, 0.35, ("precut sheets", "unbleached paper", "nonstick surface", "oven safe to 450F")),
    _leaf(H, "Kitchen Utensils & Gadgets", "Mixing Bowls", "Mixing Bowl Set", B_UTENSILS,
          {"material": ("Stainless Steel", "Glass", "Ceramic", "Melamine"), "color": HOME_COLORS},
          30, 0.45, ("nesting for compact storage", "non-slip base", "airtight lids", "pour spout and handle")),
    _leaf(H, "Kitchen Utensils & Gadgets", "Measuring Cups", "Measuring Cups and Spoons Set", B_UTENSILS,
          {"material": ("Stainless Steel", "Plastic", "Copper")},
          15, 0.4, ("engraved measurements", "magnetic nesting", "narrow spoons fit spice jars", "dishwasher safe")),
    _leaf(H, "Kitchen Utensils & Gadgets", "Spatulas", "Silicone Spatula Set", B_UTENSILS,
          {"color": ("Gray", "Red", "Black", "Teal", "White"), "material": ("Silicone",)},
          14, 0.4, ("heat resistant to 600F", "seamless one-piece design", "flexible edges", "stain-resistant silicone")),
    _leaf(H, "Kitchen Utensils & Gadgets", "Rolling Pins", "Rolling Pin", B_UTENSILS,
          {"material": ("Wood", "Marble", "Stainless Steel", "Silicone")},
          16, 0.4, ("French tapered design", "removable thickness rings", "non-stick surface", "smooth rolling")),
    _leaf(H, "Kitchen Utensils & Gadgets", "Kitchen Scales", "Digital Kitchen Scale", B_UTENSILS,
          {"color": ("Black", "Silver", "White")},
          22, 0.4, ("tare function", "grams and ounces", "backlit display", "11 lb capacity")),
    _leaf(H, "Kitchen Utensils & Gadgets", "Oven Mitts", "Oven Mitts", B_UTENSILS,
          {"material": ("Silicone", "Cotton", "Neoprene"), "color": HOME_COLORS},
          15, 0.4, ("heat resistant to 500F", "quilted cotton lining", "non-slip grip", "hanging loop")),
    _leaf(H, "Kitchen Utensils & Gadgets", "Aprons", "Kitchen Apron", ("Hudson Durable Goods", "Utopia Kitchen", "Syntus", "Hedley & Bennett", "Williams Sonoma", "Aprons Etc", "Chef Works"),
          {"color": ("Black", "Navy", "Gray", "Red", "Olive", "Tan"), "material": ("Cotton", "Canvas", "Denim")},
          18, 0.4, ("adjustable neck strap", "large front pockets", "long waist ties", "stain-resistant fabric")),
    _leaf(H, "Kitchen Appliances", "Stand Mixers", "Stand Mixer", B_APPLIANCE,
          {"capacity": ("5 qt", "4.5 qt", "6 qt", "7 qt"), "wattage": ("325W", "300W", "500W", "575W", "1000W"), "color": APPLIANCE_COLORS},
          260, 0.45, ("10-speed control", "tilt-head design", "dough hook and flat beater", "pouring shield", "stainless steel bowl")),
    _leaf(H, "Kitchen Appliances", "Hand Mixers", "Hand Mixer", B_APPLIANCE,
          {"wattage": ("250W", "200W", "300W", "350W"), "color": APPLIANCE_COLORS},
          35, 0.4, ("5-speed control", "snap-on storage case", "turbo boost", "dishwasher-safe beaters")),
    _leaf(H, "Kitchen Appliances", "Blenders", "Blender", B_APPLIANCE,
          {"capacity": ("64 oz", "48 oz", "72 oz"), "wattage": ("1000W", "700W", "1200W", "1500W"), "color": APPLIANCE_COLORS},
          90, 0.6, ("crushes ice in seconds", "pulse function", "BPA-free pitcher", "self-cleaning mode")),
    _leaf(H, "Kitchen Appliances", "Coffee Makers", "Coffee Maker", B_APPLIANCE,
          {"capacity": ("12 Cup", "14 Cup", "Single Serve", "5 Cup"), "color": APPLIANCE_COLORS},
          70, 0.55, ("programmable brew timer", "keep-warm plate", "brew strength control", "reusable filter")),
    _leaf(H, "Kitchen Appliances", "Air Fryers", "Air Fryer", B_APPLIANCE,
          {"capacity": ("6 qt", "4 qt", "5 qt", "8 qt"), "color": APPLIANCE_COLORS},
          90, 0.4, ("one-touch presets", "dishwasher-safe basket", "little to no oil", "shake reminder")),
    _leaf(H, "Kitchen Appliances", "Toasters", "Toaster", B_APPLIANCE,
          {"size": ("2-Slice", "4-Slice"), "color": APPLIANCE_COLORS},
          40, 0.45, ("extra-wide slots", "bagel setting", "removable crumb tray", "cancel and reheat buttons")),
    _leaf(H, "Cookware", "Skillets", "Skillet", B_COOKWARE,
          {"material": ("Cast Iron", "Stainless Steel", "Nonstick", "Ceramic", "Carbon Steel"), "size": ("12 inch", "10 inch", "8 inch")},
          40, 0.55, ("pre-seasoned surface", "oven safe", "even heat retention", "induction compatible")),
    _leaf(H, "Cookware", "Dutch Ovens", "Dutch Oven", B_COOKWARE,
          {"material": ("Enameled Cast Iron", "Cast Iron"), "capacity": ("5.5 qt", "6 qt", "4.5 qt", "7 qt"), "color": ("Red", "Blue", "White", "Black", "Green")},
          90, 0.6, ("tight-fitting lid", "oven safe to 500F", "chip-resistant enamel", "wide loop handles")),
    _leaf(H, "Cookware", "Saucepans", "Saucepan", B_COOKWARE,
          {"material": KITCHEN_MATERIALS, "capacity": ("2 qt", "3 qt", "1.5 qt", "4 qt")},
          40, 0.5, ("tempered glass lid", "stay-cool handle", "pour spouts", "tri-ply construction")),
    _leaf(H, "Cookware", "Cookware Sets", "Cookware Set", B_COOKWARE,
          {"material": ("Nonstick", "Stainless Steel", "Ceramic", "Cast Iron")},
          150, 0.5, ("10-piece set", "dishwasher safe", "induction compatible", "oven safe lids")),
    _leaf(H, "Furniture", "Desks", "Computer Desk", B_FURNITURE,
          {"material": ("Engineered Wood", "Metal", "Solid Wood", "Bamboo"), "color": ("Black", "Walnut", "White", "Oak", "Gray")},
          160, 0.5, ("spacious work surface", "cable management grommet", "sturdy steel frame", "easy assembly")),
    _leaf(H, "Furniture", "Standing Desks", "Electric Standing Desk", ("FlexiSpot", "Uplift Desk", "VIVO", "FEZIBO", "SHW", "Vari", "Fully", "Sauder"),
          {"size": ("48 x 24 in", "55 x 28 in", "63 x 30 in"), "color": ("Black", "Walnut", "White", "Oak")},
          300, 0.45, ("dual motor lift", "memory height presets", "anti-collision sensor", "whisper-quiet motors")),
    _leaf(H, "Furniture", "Bookshelves", "Bookshelf", B_FURNITURE,
          {"material": ("Engineered Wood", "Metal", "Solid Wood"), "color": ("Black", "Walnut", "White", "Oak")},
          90, 0.55, ("5-tier shelves", "anti-tip hardware", "industrial design", "adjustable shelves")),
    _leaf(H, "Lighting", "Desk Lamps", "LED Desk Lamp", B_LIGHTING,
          {"color": ("Black", "White", "Silver"), "wattage": ("10W", "8W", "12W", "15W")},
          35, 0.5, ("adjustable color temperature", "USB charging port", "flexible gooseneck", "eye-caring flicker-free light", "touch dimmer")),
    _leaf(H, "Lighting", "Night Lights", "Night Light", B_LIGHTING,
          {"color": ("White", "Warm White", "Multicolor")},
          15, 0.4, ("dusk-to-dawn sensor", "soft warm glow", "plug-in design", "dimmable brightness")),
    _leaf(H, "Lighting", "Floor Lamps", "Floor Lamp", B_LIGHTING,
          {"color": ("Black", "Brass", "White", "Bronze")},
          60, 0.5, ("3-way dimmer", "linen shade", "weighted base", "foot switch")),
    _leaf(H, "Nursery", "Cribs", "Convertible Crib", B_NURSERY,
          {"material": ("Pine Wood", "New Zealand Pine", "Solid Wood"), "color": NURSERY_COLORS},
          260, 0.45, ("converts to toddler bed", "adjustable mattress height", "non-toxic finish", "JPMA certified")),
    _leaf(H, "Nursery", "Crib Mattresses", "Crib Mattress", B_NURSERY,
          {"material": ("Foam", "Innerspring", "Organic Cotton", "Breathable Mesh")},
          120, 0.5, ("dual-sided firmness", "waterproof cover", "GREENGUARD Gold certified", "breathable design")),
    _leaf(H, "Nursery", "Crib Sheets", "Fitted Crib Sheet", B_BEDDING,
          {"material": ("Cotton", "Muslin", "Jersey Knit", "Bamboo Viscose"), "color": NURSERY_COLORS},
          20, 0.4, ("deep elastic pockets", "breathable fabric", "gets softer with every wash", "pack of two")),
    _leaf(H, "Nursery", "Changing Pads", "Contoured Changing Pad", B_NURSERY,
          {"color": ("White", "Gray"), "material": ("Foam", "Vinyl")},
          30, 0.4, ("safety strap", "wipeable surface", "raised contoured sides", "non-skid bottom")),
    _leaf(H, "Nursery", "Changing Tables", "Changing Table", B_NURSERY,
          {"color": NURSERY_COLORS},
          140, 0.45, ("open storage shelves", "guard rails on all sides", "includes changing pad", "solid wood construction")),
    _leaf(H, "Nursery", "Nursery Gliders", "Nursery Glider", B_NURSERY,
          {"color": ("Gray", "Cream", "Oatmeal", "Navy")},
          320, 0.45, ("smooth gliding motion", "padded armrests", "matching ottoman", "stain-resistant fabric")),
    _leaf(H, "Nursery", "Swaddle Blankets", "Swaddle Blanket", B_BEDDING,
          {"material": ("Muslin", "Cotton", "Bamboo Viscose"), "color": NURSERY_COLORS},
          25, 0.4, ("breathable muslin", "large 47 x 47 inch size", "pack of three", "gets softer with every wash")),
    _leaf(H, "Nursery", "Diaper Pails", "Diaper Pail", ("Ubbi", "Munchkin", "Diaper Genie", "Dekor", "Bubula", "Safety 1st"),
          {"color": ("White", "Gray", "Black", "Blush Pink")},
          50, 0.4, ("odor-locking seal", "hands-free foot pedal", "uses regular trash bags", "child-proof lock")),
    _leaf(H, "Nursery", "High Chairs", "High Chair", ("Graco", "Stokke", "Fisher-Price", "Ingenuity", "Chicco", "Joovy", "4moms", "Peg Perego"),
          {"color": ("Gray", "White", "Natural", "Black")},
          120, 0.5, ("adjustable seat height", "dishwasher-safe tray", "five-point harness", "folds flat for storage")),
    _leaf(H, "Bedding & Bath", "Bed Sheets", "Sheet Set", B_BEDDING,
          {"size": BED_SIZES, "material": ("Microfiber", "Cotton", "Linen", "Bamboo"), "color": HOME_COLORS},
          40, 0.5, ("deep pockets fit up to 16 inches", "breathable weave", "wrinkle resistant", "hotel-quality softness")),
    _leaf(H, "Bedding & Bath", "Bath Towels", "Bath Towel Set", B_BEDDING,
          {"material": ("Cotton", "Turkish Cotton", "Bamboo"), "color": HOME_COLORS},
          35, 0.45, ("quick-drying loops", "highly absorbent", "soft plush feel", "pack of four")),
    _leaf(H, "Heating & Air", "Humidifiers", "Cool Mist Humidifier", B_AIR,
          {"capacity": ("4L", "2.5L", "6L"), "color": ("White", "Black", "Gray")},
          45, 0.45, ("whisper-quiet operation", "auto shut-off", "top-fill tank", "runs up to 40 hours")),
    _leaf(H, "Home Decor", "Candles", "Scented Candle", B_CANDLES,
          {"scent": ("Vanilla", "Lavender", "Sandalwood", "Citrus", "Balsam Fir", "Sea Salt"), "color": ("White", "Cream", "Amber", "Green")},
          22, 0.5, ("soy wax blend", "60-hour burn time", "cotton wick", "glass jar with lid")),
    # ----------------------------------------------------------------- Clothing
    _leaf(C, "Men's Clothing", "Men's T-Shirts", "Men's Crew Neck T-Shirt", B_MENS,
          {"size": APPAREL_SIZES, "color": APPAREL_COLORS, "material": ("Cotton", "Cotton Blend", "Polyester")},
          18, 0.45, ("tag-free collar", "pre-shrunk fabric", "classic fit", "pack of three")),
    _leaf(C, "Men's Clothing", "Men's Jeans", "Men's Slim Fit Jeans", B_MENS,
          {"size": ("32W x 32L", "34W x 32L", "30W x 30L", "36W x 32L", "33W x 30L", "38W x 34L"),
           "color": ("Dark Wash", "Medium Wash", "Black", "Light Wash")},
          45, 0.45, ("stretch denim", "five-pocket styling", "zip fly", "sits below waist")),
    _leaf(C, "Men's Clothing", "Men's Hoodies", "Men's Pullover Hoodie", B_MENS,
          {"size": APPAREL_SIZES, "color": APPAREL_COLORS, "material": ("Cotton Blend", "Fleece", "Polyester")},
          38, 0.45, ("kangaroo pocket", "ribbed cuffs", "brushed fleece lining", "drawstring hood")),
    _leaf(C, "Women's Clothing", "Women's Leggings", "Women's High Waist Leggings", B_WOMENS,
          {"size": APPAREL_SIZES, "color": APPAREL_COLORS, "material": ("Nylon Spandex", "Polyester", "Cotton Blend")},
          30, 0.5, ("squat-proof fabric", "hidden waistband pocket", "four-way stretch", "moisture wicking")),
    _leaf(C, "Women's Clothing", "Women's Dresses", "Women's Summer Dress", B_WOMENS,
          {"size": APPAREL_SIZES, "color": ("Black", "Floral", "Navy", "White", "Red", "Green"), "material": ("Rayon", "Cotton", "Linen")},
          40, 0.45, ("flowy A-line silhouette", "side pockets", "adjustable straps", "lightweight breathable fabric")),
    _leaf(C, "Women's Clothing", "Women's Sweaters", "Women's Cardigan Sweater", B_WOMENS,
          {"size": APPAREL_SIZES, "color": APPAREL_COLORS, "material": ("Acrylic", "Cotton", "Wool Blend", "Cashmere")},
          45, 0.5, ("button front", "relaxed fit", "soft knit", "ribbed trim")),
    _leaf(C, "Activewear", "Athletic Shorts", "Athletic Shorts", B_ACTIVE,
          {"size": APPAREL_SIZES, "color": APPAREL_COLORS},
          25, 0.4, ("quick-dry fabric", "zippered pocket", "built-in liner", "elastic waistband")),
    _leaf(C, "Activewear", "Sports Bras", "Sports Bra", B_ACTIVE,
          {"size": APPAREL_SIZES, "color": GYM_COLORS},
          30, 0.4, ("medium support", "removable pads", "racerback design", "moisture wicking")),
    _leaf(C, "Shoes", "Running Shoes", "Running Shoes", B_SHOES,
          {"size": SHOE_SIZES, "color": ("Black", "White", "Gray", "Blue", "Red", "Black/White")},
          100, 0.4, ("responsive foam cushioning", "breathable mesh upper", "durable rubber outsole", "reflective details")),
    _leaf(C, "Shoes", "Hiking Boots", "Hiking Boots", B_SHOES,
          {"size": SHOE_SIZES, "color": ("Brown", "Black", "Gray", "Tan")},
          120, 0.4, ("waterproof membrane", "grippy lug outsole", "ankle support", "cushioned footbed")),
    _leaf(C, "Shoes", "Sneakers", "Casual Sneakers", B_SHOES,
          {"size": SHOE_SIZES, "color": ("White", "Black", "Gray", "Navy")},
          70, 0.45, ("memory foam insole", "lace-up closure", "lightweight sole", "everyday comfort")),
    _leaf(C, "Outerwear", "Rain Jackets", "Rain Jacket", B_OUTERWEAR,
          {"size": APPAREL_SIZES, "color": ("Black", "Navy", "Green", "Red", "Yellow")},
          90, 0.45, ("waterproof breathable shell", "packable hood", "sealed seams", "adjustable cuffs")),
    _leaf(C, "Outerwear", "Fleece Jackets", "Fleece Jacket", B_OUTERWEAR,
          {"size": APPAREL_SIZES, "color": ("Black", "Navy", "Gray", "Olive", "Burgundy")},
          60, 0.45, ("full-zip front", "zippered hand pockets", "anti-pill fleece", "warm midweight layer")),
    _leaf(C, "Bags & Accessories", "Diaper Bags", "Diaper Bag Backpack", B_DIAPER_BAG,
          {"color": ("Black", "Gray", "Heather Gray", "Navy", "Blush Pink")},
          55, 0.45, ("insulated bottle pockets", "changing pad included", "stroller straps", "wipeable lining")),
    _leaf(C, "Bags & Accessories", "Gym Bags", "Gym Duffel Bag", B_BAGS,
          {"color": ("Black", "Gray", "Navy", "Red")},
          35, 0.45, ("ventilated shoe compartment", "wet pocket", "padded shoulder strap", "water-resistant fabric")),
    _leaf(C, "Baby Clothing", "Baby Bodysuits", "Baby Bodysuit Set", B_BABY_CLOTHES,
          {"size": BABY_SIZES, "color": ("White", "Multicolor", "Gray", "Pink", "Blue"), "material": ("Organic Cotton", "Cotton")},
          20, 0.4, ("envelope neckline", "snap closures", "tagless comfort", "pack of five")),
    # ----------------------------------------------------------------- Beauty
    _leaf(B, "Skin Care", "Face Moisturizers", "Face Moisturizer", B_SKIN,
          {"scent": ("Unscented", "Fragrance Free", "Light Fresh"), "capacity": ("1.7 fl oz", "3 fl oz", "2.5 fl oz")},
          18, 0.5, ("hyaluronic acid", "non-comedogenic formula", "24-hour hydration", "dermatologist tested")),
    _leaf(B, "Skin Care", "Body Lotions", "Body Lotion", B_SKIN,
          {"scent": BODY_SCENTS, "capacity": ("16 fl oz", "8 fl oz", "19 fl oz")},
          12, 0.45, ("shea butter", "fast-absorbing formula", "ceramides", "non-greasy feel")),
    _leaf(B, "Skin Care", "Sunscreens", "Sunscreen Lotion", B_SKIN,
          {"scent": ("Unscented", "Coconut", "Light Fresh"), "capacity": ("3 fl oz", "6 fl oz", "8 fl oz")},
          14, 0.4, ("broad spectrum SPF 50", "water resistant 80 minutes", "reef-friendly formula", "non-greasy finish")),
    _leaf(B, "Hair Care", "Shampoos", "Shampoo", B_HAIR,
          {"scent": HAIR_SCENTS, "capacity": ("12 fl oz", "13.5 fl oz", "28 fl oz")},
          10, 0.5, ("sulfate-free formula", "color safe", "strengthens damaged hair", "gentle daily cleanse")),
    _leaf(B, "Hair Care", "Conditioners", "Conditioner", B_HAIR,
          {"scent": HAIR_SCENTS, "capacity": ("12 fl oz", "13.5 fl oz", "28 fl oz")},
          10, 0.5, ("detangling formula", "silicone free", "deep hydration", "frizz control")),
    _leaf(B, "Hair Care", "Hair Dryers", "Hair Dryer", B_HAIR_TOOLS,
          {"wattage": ("1875W", "1600W", "2000W"), "color": ("Black", "Pink", "White", "Purple")},
          60, 0.7, ("ionic frizz control", "three heat settings", "cool shot button", "concentrator and diffuser")),
    _leaf(B, "Bath & Body", "Body Washes", "Body Wash", B_BATH,
          {"scent": BODY_SCENTS, "capacity": ("22 fl oz", "16 fl oz", "30 fl oz")},
          9, 0.4, ("moisturizing formula", "plant-based cleansers", "rich lather", "paraben free")),
    _leaf(B, "Bath & Body", "Deodorants", "Deodorant", B_BATH,
          {"scent": ("Unscented", "Coconut", "Eucalyptus", "Cedarwood", "Lavender")},
          8, 0.35, ("aluminum free", "48-hour odor protection", "baking soda free", "smooth glide")),
    _leaf(B, "Baby Care", "Baby Lotions", "Baby Lotion", B_BABY_CARE,
          {"scent": BABY_SCENTS, "capacity": ("13.6 fl oz", "8 fl oz", "27 fl oz")},
          10, 0.4, ("tear-free gentle formula", "pediatrician tested", "hypoallergenic", "colloidal oatmeal")),
    _leaf(B, "Baby Care", "Diaper Creams", "Diaper Rash Cream", B_BABY_CARE,
          {"capacity": ("4 oz", "2 oz", "16 oz")},
          9, 0.4, ("zinc oxide protection", "soothes on contact", "fragrance free", "pediatrician recommended")),
    _leaf(B, "Baby Care", "Baby Wipes", "Baby Wipes", B_BABY_CARE,
          {"scent": ("Unscented", "Fresh Scent", "Aloe")},
          15, 0.4, ("99% water", "thick and soft", "plant-based fibers", "pack of 720 wipes")),
    _leaf(B, "Makeup", "Lipsticks", "Lipstick", B_MAKEUP,
          {"color": ("Nude", "Red", "Pink", "Berry", "Mauve", "Coral")},
          10, 0.55, ("long-wearing formula", "matte finish", "hydrating vitamin E", "transfer resistant")),
    _leaf(B, "Makeup", "Mascaras", "Mascara", B_MAKEUP,
          {"color": ("Blackest Black", "Black", "Brown")},
          10, 0.5, ("volumizing brush", "waterproof formula", "clump free", "lengthening fibers")),
    _leaf(B, "Oral Care", "Electric Toothbrushes", "Electric Toothbrush", B_ORAL,
          {"color": ("White", "Black", "Pink", "Blue")},
          60, 0.6, ("2-minute smart timer", "pressure sensor", "multiple cleaning modes", "travel case")),
    # ----------------------------------------------------------------- Sports & Outdoors
    _leaf(S, "Camping & Hiking", "Tents", "Camping Tent", B_CAMPING,
          {"capacity": ("4-Person", "2-Person", "6-Person", "8-Person"), "color": OUTDOOR_COLORS},
          150, 0.55, ("weatherproof rainfly", "quick pitch setup", "mesh ventilation panels", "carry bag included")),
    _leaf(S, "Camping & Hiking", "Sleeping Bags", "Sleeping Bag", B_CAMPING,
          {"material": ("Synthetic Fill", "Down Fill"), "color": OUTDOOR_COLORS, "size": ("Regular", "Long", "Wide")},
          70, 0.55, ("rated to 20 degrees", "compression stuff sack", "draft tube along zipper", "mummy hood")),
    _leaf(S, "Camping & Hiking", "Sleeping Pads", "Sleeping Pad", B_CAMPING,
          {"size": ("Regular", "Long", "Wide"), "color": OUTDOOR_COLORS},
          60, 0.55, ("inflates in seconds", "high R-value insulation", "packs small", "puncture-resistant fabric")),
    _leaf(S, "Camping & Hiking", "Camping Stoves", "Camping Stove", B_CAMPING,
          {"size": ("Single Burner", "Two Burner")},
          55, 0.55, ("piezo push-button ignition", "wind-blocking panels", "adjustable flame control", "runs on propane")),
    _leaf(S, "Camping & Hiking", "Headlamps", "LED Headlamp", B_LIGHTS,
          {"color": ("Black", "Red", "Blue", "Orange")},
          30, 0.5, ("400 lumens brightness", "red night-vision mode", "rechargeable battery", "IPX4 water resistance")),
    _leaf(S, "Camping & Hiking", "Camping Lanterns", "Camping Lantern", B_LIGHTS,
          {"color": ("Green", "Black", "Orange")},
          30, 0.5, ("1000 lumens brightness", "collapsible design", "USB rechargeable", "emergency power bank")),
    _leaf(S, "Camping & Hiking", "Coolers", "Cooler", B_COOLERS,
          {"capacity": ("45 qt", "20 qt", "65 qt", "30 qt"), "color": ("White", "Tan", "Navy", "Charcoal", "Blue")},
          120, 0.7, ("keeps ice for five days", "rotomolded construction", "bear-resistant latches", "built-in bottle opener")),
    _leaf(S, "Camping & Hiking", "Hiking Backpacks", "Hiking Backpack", B_PACKS,
          {"capacity": ("30L", "45L", "20L", "65L"), "color": OUTDOOR_COLORS},
          110, 0.5, ("ventilated back panel", "hydration sleeve", "adjustable hip belt", "integrated rain cover")),
    _leaf(S, "Camping & Hiking", "Camp Chairs", "Camp Chair", B_CAMPING,
          {"color": OUTDOOR_COLORS},
          45, 0.5, ("padded armrests", "cup holder", "folds into carry bag", "300 lb capacity")),
    _leaf(S, "Camping & Hiking", "Hammocks", "Camping Hammock", ("ENO", "Wise Owl Outfitters", "Kammok", "Bear Butt", "Grand Trunk", "Hennessy Hammock"),
          {"color": OUTDOOR_COLORS, "size": ("Double", "Single")},
          40, 0.45, ("tree straps included", "parachute nylon", "packs into attached stuff sack", "400 lb capacity")),
    _leaf(S, "Camping & Hiking", "Trekking Poles", "Trekking Poles", ("Black Diamond", "LEKI", "TrailBuddy", "Foxelli", "Cascade Mountain Tech", "REI Co-op", "Montem"),
          {"material": ("Aluminum", "Carbon Fiber"), "color": ("Black", "Blue", "Red", "Green")},
          50, 0.6, ("quick flip locks", "cork grips", "shock absorbing", "collapsible to 24 inches")),
    _leaf(S, "Camping & Hiking", "Water Bottles", "Insulated Water Bottle", B_BOTTLES,
          {"capacity": ("32 oz", "24 oz", "40 oz", "18 oz"), "material": ("Stainless Steel", "BPA-Free Plastic"), "color": GYM_COLORS},
          30, 0.45, ("keeps drinks cold 24 hours", "leak-proof lid", "fits most cup holders", "sweat-free exterior")),
    _leaf(S, "Camping & Hiking", "First Aid Kits", "First Aid Kit", B_FIRST_AID,
          {"size": ("Medium", "Small", "Large")},
          30, 0.5, ("water-resistant case", "organized compartments", "trauma supplies", "compact for backpacks")),
    _leaf(S, "Exercise & Fitness", "Yoga Mats", "Yoga Mat", B_FITNESS,
          {"material": ("TPE", "PVC", "Natural Rubber", "Cork"), "size": ("6mm", "4mm", "8mm"), "color": GYM_COLORS},
          30, 0.55, ("non-slip texture", "carrying strap", "extra cushioning", "alignment lines")),
    _leaf(S, "Exercise & Fitness", "Dumbbells", "Dumbbells", B_FITNESS,
          {"size": ("10 lb", "5 lb", "15 lb", "20 lb", "25 lb", "50 lb"), "material": ("Neoprene", "Cast Iron", "Rubber")},
          45, 0.7, ("hexagonal anti-roll shape", "knurled grip", "sold as a pair", "color-coded weights")),
    _leaf(S, "Exercise & Fitness", "Kettlebells", "Kettlebell", B_FITNESS,
          {"size": ("20 lb", "15 lb", "25 lb", "35 lb", "53 lb"), "material": ("Cast Iron", "Vinyl")},
          45, 0.5, ("wide handle", "flat base", "powder-coated finish", "single-piece casting")),
    _leaf(S, "Exercise & Fitness", "Resistance Bands", "Resistance Bands Set", B_FITNESS,
          {"color": ("Multicolor", "Black", "Pink")},
          20, 0.45, ("five resistance levels", "door anchor", "cushioned handles", "carry bag")),
    _leaf(S, "Exercise & Fitness", "Jump Ropes", "Jump Rope", B_FITNESS,
          {"color": ("Black", "Blue", "Pink", "Red")},
          12, 0.5, ("ball-bearing handles", "adjustable length", "tangle-free cable", "foam grips")),
    _leaf(S, "Exercise & Fitness", "Foam Rollers", "Foam Roller", B_FITNESS,
          {"size": ("18 inch", "12 inch", "36 inch"), "color": GYM_COLORS},
          25, 0.45, ("high-density foam", "textured trigger-point surface", "lightweight and portable", "holds its shape")),
    _leaf(S, "Exercise & Fitness", "Pull-Up Bars", "Doorway Pull-Up Bar", B_FITNESS,
          {"color": ("Black", "Silver")},
          35, 0.4, ("no-screw installation", "multi-grip positions", "foam padded handles", "300 lb capacity")),
    _leaf(S, "Exercise & Fitness", "Ab Rollers", "Ab Roller Wheel", B_FITNESS,
          {"color": ("Black", "Red", "Blue")},
          20, 0.4, ("extra-wide wheel", "knee pad included", "non-slip handles", "quiet rolling")),
    _leaf(S, "Exercise & Fitness", "Exercise Bikes", "Exercise Bike", B_CARDIO,
          {"color": ("Black", "White", "Gray")},
          350, 0.6, ("magnetic resistance", "LCD performance monitor", "adjustable seat", "tablet holder")),
    _leaf(S, "Exercise & Fitness", "Shaker Bottles", "Shaker Bottle", B_SHAKER,
          {"capacity": ("28 oz", "20 oz", "32 oz"), "color": GYM_COLORS},
          12, 0.4, ("wire whisk ball", "leak-proof lid", "dishwasher safe", "measurement markings")),
    # ----------------------------------------------------------------- Office
    _leaf(O, "Office Furniture", "Office Chairs", "Ergonomic Office Chair", B_OFFICE_FURNITURE,
          {"material": ("Mesh", "Faux Leather", "Fabric"), "color": ("Black", "Gray", "White", "Blue")},
          220, 0.6, ("adjustable lumbar support", "breathable mesh back", "3D armrests", "tilt lock", "smooth-rolling casters")),
    _leaf(O, "Office Furniture", "Filing Cabinets", "Filing Cabinet", B_OFFICE_FURNITURE,
          {"material": ("Steel", "Engineered Wood"), "color": ("Black", "White", "Gray", "Walnut")},
          120, 0.5, ("locking drawers", "letter and legal size", "anti-tip design", "mobile casters")),
    _leaf(O, "Office Furniture", "Footrests", "Ergonomic Footrest", B_OFFICE_FURNITURE,
          {"material": ("Foam", "Plastic")},
          35, 0.4, ("adjustable tilt", "massage texture", "non-slip surface", "improves posture")),
    _leaf(O, "Office Supplies", "Notebooks", "Spiral Notebook", B_OFFICE_SUPPLIES,
          {"size": ("College Ruled", "Wide Ruled", "Graph Ruled", "Dot Grid"), "color": ("Black", "Blue", "Red", "Green", "Assorted")},
          8, 0.5, ("100 sheets", "perforated pages", "pocket dividers", "durable poly cover")),
    _leaf(O, "Office Supplies", "Pens", "Gel Pens", B_OFFICE_SUPPLIES,
          {"color": ("Black", "Blue", "Assorted", "Red")},
          10, 0.5, ("smooth quick-dry ink", "comfort grip", "retractable tip", "pack of twelve")),
    _leaf(O, "Office Supplies", "Sticky Notes", "Sticky Notes", B_OFFICE_SUPPLIES,
          {"color": ("Canary Yellow", "Assorted", "Pastel", "Neon")},
          8, 0.5, ("super sticky adhesive", "3 x 3 inch pads", "recyclable paper", "pack of twelve pads")),
    _leaf(O, "Office Supplies", "Desk Organizers", "Desk Organizer", B_ORGANIZERS,
          {"material": ("Mesh", "Bamboo", "Wood", "Acrylic"), "color": ("Black", "White", "Natural", "Gold")},
          25, 0.45, ("multiple compartments", "drawer for small items", "pen holder", "compact footprint")),
    _leaf(O, "Office Supplies", "Whiteboards", "Dry Erase Whiteboard", B_BOARDS,
          {"size": ("24 x 36 in", "36 x 48 in", "17 x 23 in")},
          45, 0.5, ("aluminum frame", "marker tray", "ghost-resistant surface", "wall-mount hardware")),
    _leaf(O, "Office Electronics", "Printers", "Wireless Printer", B_PRINTERS,
          {"color": ("White", "Black", "Gray")},
          170, 0.55, ("wireless and mobile printing", "automatic two-sided printing", "high-yield ink", "built-in scanner")),
    _leaf(O, "Art Supplies", "Acrylic Paint Sets", "Acrylic Paint Set", B_ART,
          {"size": ("24 Colors", "12 Colors", "48 Colors")},
          20, 0.5, ("rich pigments", "non-toxic formula", "fast-drying", "brushes included")),
    _leaf(O, "Art Supplies", "Sketchbooks", "Sketchbook", B_ART,
          {"size": ("9 x 12 in", "5.5 x 8.5 in", "11 x 14 in")},
          12, 0.45, ("acid-free paper", "spiral binding", "100 sheets", "heavyweight pages")),
    _leaf(O, "Art Supplies", "Canvases", "Stretched Canvas", B_ART,
          {"size": ("11 x 14 in", "16 x 20 in", "8 x 10 in")},
          25, 0.5, ("triple-primed cotton", "pine stretcher bars", "pack of ten", "staple-free edges")),
    # ----------------------------------------------------------------- Toys
    _leaf(T, "Building Toys", "Building Sets", "Building Set", B_BUILDING,
          {"age_range": KIDS_AGES},
          40, 0.7, ("step-by-step instructions", "compatible with other sets", "encourages creative play", "storage box included")),
    _leaf(T, "Building Toys", "Magnetic Tiles", "Magnetic Tiles Set", B_BUILDING,
          {"age_range": ("3-5 Years", "6-8 Years"), "color": ("Multicolor", "Clear Colors")},
          45, 0.5, ("strong magnets", "STEM learning", "100 pieces", "rivet-secured edges")),
    _leaf(T, "Baby & Toddler Toys", "Play Mats", "Baby Play Mat", B_BABY_TOYS,
          {"age_range": BABY_AGES, "color": ("Multicolor", "Gray", "Natural")},
          50, 0.45, ("detachable toys", "machine washable mat", "tummy time pillow", "crinkle textures")),
    _leaf(T, "Baby & Toddler Toys", "Crib Mobiles", "Crib Mobile", B_BABY_TOYS,
          {"age_range": ("0-12 Months",), "color": ("Multicolor", "White", "Gray")},
          40, 0.45, ("soothing melodies", "remote control", "rotating plush toys", "projector light")),
    _leaf(T, "Baby & Toddler Toys", "Teething Toys", "Teether Toy", B_BABY_TOYS,
          {"age_range": ("0-12 Months",), "color": KIDS_COLORS},
          10, 0.4, ("BPA-free silicone", "textured surfaces", "easy-grip shape", "freezer safe")),
    _leaf(T, "Stuffed Animals & Plush", "Stuffed Animals", "Plush Stuffed Animal", B_PLUSH,
          {"age_range": ALL_AGES, "color": ("Brown", "Gray", "White", "Pink", "Blue")},
          20, 0.5, ("super soft fabric", "embroidered eyes", "surface washable", "huggable size")),
    _leaf(T, "Games & Puzzles", "Board Games", "Board Game", B_GAMES,
          {"age_range": ("8-12 Years", "12+ Years", "6-8 Years")},
          28, 0.5, ("for 2 to 6 players", "30-minute play time", "family game night", "easy to learn")),
    _leaf(T, "Games & Puzzles", "Jigsaw Puzzles", "Jigsaw Puzzle", B_GAMES,
          {"age_range": ("12+ Years", "8-12 Years"), "size": ("1000 Pieces", "500 Pieces", "300 Pieces")},
          18, 0.45, ("precision-cut pieces", "poster included", "glare-free finish", "sturdy box")),
    _leaf(T, "Outdoor Play", "Scooters", "Kick Scooter", B_OUTDOOR_PLAY,
          {"age_range": ("6-8 Years", "3-5 Years", "8-12 Years"), "color": KIDS_COLORS},
          60, 0.5, ("adjustable handlebar", "light-up wheels", "rear fender brake", "folding frame")),
    _leaf(T, "Outdoor Play", "Foam Blasters", "Foam Dart Blaster", B_OUTDOOR_PLAY,
          {"age_range": ("8-12 Years", "12+ Years"), "color": ("Orange", "Blue", "Green")},
          25, 0.5, ("rotating drum", "20 foam darts", "tactical rail", "fires up to 90 feet")),
    _leaf(T, "Dolls & Vehicles", "Dolls", "Fashion Doll", B_DOLLS,
          {"age_range": ("3-5 Years", "6-8 Years"), "color": ("Pink", "Purple", "Multicolor")},
          20, 0.5, ("posable joints", "accessories included", "fashion outfits", "collectible design")),
    _leaf(T, "Dolls & Vehicles", "Toy Cars", "Die-Cast Toy Car Set", B_DOLLS,
          {"age_range": ("3-5 Years", "6-8 Years", "8-12 Years"), "color": KIDS_COLORS},
          15, 0.5, ("1:64 scale", "die-cast metal bodies", "rolling wheels", "pack of five")),
    # ----------------------------------------------------------------- Tools
    _leaf(TL, "Painting Supplies", "Paint Brushes", "Angled Paint Brush", B_PAINT_SUPPLIES,
          {"size": ("2 inch", "2.5 inch", "1.5 inch", "3 inch", "1 inch")},
          12, 0.45, ("sharp cutting-in edge", "synthetic bristles", "comfort handle", "for all paints and stains")),
    _leaf(TL, "Painting Supplies", "Paint Rollers", "Paint Roller", B_PAINT_SUPPLIES,
          {"size": ("9 inch", "4 inch", "18 inch"), "material": ("Microfiber", "Woven Polyester", "Foam")},
          14, 0.45, ("shed-resistant cover", "smooth finish", "threaded handle", "3/8 inch nap")),
    _leaf(TL, "Painting Supplies", "Paint Trays", "Paint Tray", B_PAINT_SUPPLIES,
          {"material": ("Plastic", "Metal"), "size": ("9 inch", "18 inch")},
          8, 0.4, ("deep well", "ladder legs", "includes liners", "textured ramp")),
    _leaf(TL, "Painting Supplies", "Painter's Tape", "Painter's Tape", B_PAINT_SUPPLIES,
          {"size": ("1.88 inch", "1.41 inch", "0.94 inch"), "color": ("Blue", "Green", "Yellow")},
          9, 0.4, ("clean removal up to 14 days", "sharp paint lines", "multi-surface", "60 yard roll")),
    _leaf(TL, "Painting Supplies", "Drop Cloths", "Drop Cloth", B_PAINT_SUPPLIES,
          {"material": ("Canvas", "Plastic"), "size": ("9 x 12 ft", "4 x 15 ft", "12 x 15 ft")},
          20, 0.5, ("absorbent canvas", "leak-proof backing", "reusable", "protects floors and furniture")),
    _leaf(TL, "Painting Supplies", "Interior Paint", "Interior Paint", B_PAINT,
          {"capacity": ("1 gal", "1 qt", "5 gal"), "color": ("White", "Greige", "Navy", "Sage Green", "Charcoal", "Beige")},
          45, 0.6, ("paint and primer in one", "eggshell finish", "low VOC", "one-coat coverage")),
    _leaf(TL, "Painting Supplies", "Primers", "Primer", B_PRIMER,
          {"capacity": ("1 gal", "1 qt", "5 gal")},
          30, 0.55, ("stain blocking", "high adhesion", "fast drying", "interior and exterior")),
    _leaf(TL, "Painting Supplies", "Putty Knives", "Putty Knife", B_HAND_TOOLS,
          {"material": ("Stainless Steel", "Carbon Steel", "Plastic"), "size": ("1.5 inch", "3 inch", "6 inch")},
          8, 0.45, ("flexible blade", "hammer-end cap", "comfort grip", "rust resistant")),
    _leaf(TL, "Painting Supplies", "Sandpaper", "Sandpaper Assortment", ("3M", "Gator", "Norton", "DEWALT", "Warner", "Miady"),
          {"size": ("120 Grit", "220 Grit", "80 Grit", "Assorted Grit")},
          10, 0.45, ("wet or dry use", "aluminum oxide abrasive", "tear-resistant backing", "pack of 30 sheets")),
    _leaf(TL, "Painting Supplies", "Spackle", "Spackling Paste", ("DAP", "3M", "Red Devil", "Elmer's", "Bondo", "Custom Building Products"),
          {"capacity": ("8 oz", "16 oz", "32 oz")},
          9, 0.4, ("no shrinking or cracking", "paintable in 30 minutes", "sandable", "color-change indicator")),
    _leaf(TL, "Painting Supplies", "Caulk Guns", "Caulk Gun", ("Newborn", "Dripless", "Red Devil", "Gorilla", "DEWALT", "Ryobi"),
          {"material": ("Steel", "Aluminum")},
          12, 0.5, ("dripless pressure release", "built-in seal puncture tool", "smooth rod", "ladder hook")),
    _leaf(TL, "Power Tools", "Cordless Drills", "Cordless Drill", B_POWER_TOOLS,
          {"color": ("Yellow", "Red", "Teal", "Green", "Orange")},
          110, 0.5, ("two-speed gearbox", "LED work light", "lithium-ion battery", "half-inch keyless chuck")),
    _leaf(TL, "Power Tools", "Circular Saws", "Circular Saw", B_POWER_TOOLS,
          {"wattage": ("1800W", "1500W"), "color": ("Yellow", "Red", "Teal")},
          120, 0.45, ("laser guide", "bevel adjustment", "electric brake", "carbide blade included")),
    _leaf(TL, "Power Tools", "Orbital Sanders", "Random Orbital Sander", B_POWER_TOOLS,
          {"wattage": ("300W", "240W"), "color": ("Yellow", "Red", "Blue")},
          65, 0.45, ("dust collection bag", "variable speed", "hook-and-loop pad", "low vibration")),
    _leaf(TL, "Hand Tools", "Multi-Tools", "Multi-Tool", B_MULTI_TOOLS,
          {"material": ("Stainless Steel", "Titanium"), "color": ("Silver", "Black")},
          60, 0.7, ("one-hand opening blade", "needle-nose pliers", "wire cutters", "belt sheath")),
    _leaf(TL, "Hand Tools", "Hammers", "Claw Hammer", B_HAND_TOOLS,
          {"material": ("Steel", "Fiberglass", "Wood"), "size": ("16 oz", "20 oz", "22 oz")},
          25, 0.45, ("magnetic nail starter", "shock-reduction grip", "forged head", "rip claw")),
    _leaf(TL, "Hand Tools", "Screwdriver Sets", "Screwdriver Set", B_HAND_TOOLS,
          {"size": ("10-Piece", "6-Piece", "20-Piece")},
          25, 0.5, ("magnetic tips", "cushion-grip handles", "Phillips and slotted", "storage case")),
    _leaf(TL, "Hand Tools", "Tape Measures", "Tape Measure", B_HAND_TOOLS,
          {"size": ("25 ft", "16 ft", "30 ft")},
          15, 0.45, ("magnetic hook", "belt clip", "11 ft standout", "fraction markings")),
    _leaf(TL, "Safety Equipment", "Safety Glasses", "Safety Glasses", B_SAFETY,
          {"color": ("Clear", "Smoke", "Amber")},
          12, 0.45, ("anti-fog coating", "ANSI Z87.1 rated", "scratch-resistant lenses", "wraparound design")),
    _leaf(TL, "Safety Equipment", "Work Gloves", "Work Gloves", B_SAFETY,
          {"size": APPAREL_SIZES, "material": ("Leather", "Nitrile", "Cotton")},
          15, 0.45, ("touchscreen fingertips", "reinforced palm", "breathable back", "elastic cuff")),
    _leaf(TL, "Ladders", "Step Ladders", "Step Ladder", B_LADDERS,
          {"material": ("Aluminum", "Fiberglass", "Steel"), "size": ("3-Step", "2-Step", "4-Step")},
          70, 0.5, ("wide anti-slip steps", "folds flat", "tool tray", "300 lb load capacity")),
    # ----------------------------------------------------------------- Grocery
    _leaf(G, "Baking Ingredients", "Flour", "All-Purpose Flour", B_BAKING_FOOD,
          {"capacity": ("5 lb", "2 lb", "10 lb")},
          7, 0.4, ("unbleached", "non-GMO verified", "milled from hard red wheat", "ideal for breads and cookies")),
    _leaf(G, "Baking Ingredients", "Chocolate Chips", "Baking Chips", B_BAKING_FOOD,
          {"flavor": ("Semi-Sweet Chocolate", "Milk Chocolate", "Dark Chocolate", "White Chocolate", "Butterscotch")},
          6, 0.4, ("real cocoa butter", "holds shape when baked", "resealable bag", "fair trade cocoa")),
    _leaf(G, "Baking Ingredients", "Vanilla Extract", "Pure Vanilla Extract", B_BAKING_FOOD,
          {"capacity": ("4 fl oz", "2 fl oz", "8 fl oz")},
          12, 0.45, ("Madagascar bourbon vanilla", "no corn syrup", "gluten free", "rich aroma")),
    _leaf(G, "Baking Ingredients", "Sugar", "Granulated Sugar", B_BAKING_FOOD,
          {"capacity": ("4 lb", "2 lb", "10 lb")},
          5, 0.35, ("pure cane sugar", "fine granulation", "resealable bag", "kosher certified")),
    _leaf(G, "Baking Ingredients", "Sprinkles", "Sprinkles", B_SPRINKLES,
          {"color": ("Rainbow", "Chocolate", "Pastel", "Red and Green")},
          7, 0.4, ("vibrant colors", "natural dyes", "shaker bottle", "gluten free")),
    _leaf(G, "Baking Ingredients", "Cake Mix", "Cake Mix", B_CAKE_MIX,
          {"flavor": ("Chocolate Fudge", "Vanilla", "Red Velvet", "Lemon", "Funfetti", "Carrot")},
          4, 0.4, ("moist and fluffy", "easy to make", "no artificial flavors", "makes a two-layer cake")),
    _leaf(G, "Snacks", "Snack Bars", "Snack Bars", B_SNACKS,
          {"flavor": ("Dark Chocolate Nuts & Sea Salt", "Peanut Butter", "Oats & Honey", "Chocolate Chip", "Blueberry"), "capacity": ("12 Count", "6 Count", "24 Count")},
          12, 0.45, ("whole grain oats", "gluten free", "no artificial sweeteners", "individually wrapped")),
    _leaf(G, "Snacks", "Mixed Nuts", "Mixed Nuts", B_SNACKS,
          {"flavor": ("Lightly Salted", "Unsalted", "Honey Roasted", "Smoked", "Sea Salt")},
          12, 0.45, ("roasted in small batches", "resealable canister", "good source of protein", "kosher")),
    _leaf(G, "Snacks", "Potato Chips", "Potato Chips", B_CHIPS,
          {"flavor": ("Sea Salt", "Salt & Vinegar", "BBQ", "Sour Cream & Onion", "Jalapeno")},
          4, 0.4, ("kettle cooked", "no artificial flavors", "gluten free", "family size bag")),
    _leaf(G, "Snacks", "Trail Mix", "Trail Mix", B_SNACKS,
          {"flavor": ("Sweet & Salty", "Tropical", "Chocolate Nut", "Mountain Mix")},
          10, 0.4, ("resealable pouch", "energy-packed", "real fruit and nuts", "great for hiking")),
    _leaf(G, "Beverages", "Coffee Beans", "Whole Bean Coffee", B_COFFEE,
          {"flavor": ("Medium Roast", "Dark Roast", "French Roast", "Breakfast Blend", "Hazelnut", "Espresso Roast"), "capacity": ("12 oz", "2 lb", "32 oz")},
          14, 0.45, ("100% arabica beans", "small-batch roasted", "notes of cocoa and caramel", "ethically sourced")),
    _leaf(G, "Beverages", "Tea", "Tea Bags", B_TEA,
          {"flavor": ("Green", "Earl Grey", "Chamomile", "English Breakfast", "Peppermint", "Chai")},
          6, 0.4, ("individually wrapped bags", "natural ingredients", "caffeine free options", "pack of 100")),
    _leaf(G, "Beverages", "Electrolyte Drink Mix", "Electrolyte Drink Mix", B_HYDRATION,
          {"flavor": ("Lemon Lime", "Fruit Punch", "Orange", "Watermelon", "Strawberry")},
          22, 0.4, ("zero sugar", "single-serve sticks", "three times the electrolytes", "non-GMO")),
    _leaf(G, "Sports Nutrition", "Protein Powder", "Protein Powder", B_PROTEIN,
          {"flavor": ("Double Rich Chocolate", "Vanilla", "Strawberry", "Cookies & Cream", "Unflavored"), "capacity": ("2 lb", "5 lb", "1 lb")},
          45, 0.45, ("24 grams of protein per serving", "mixes easily", "gluten free", "third-party tested")),
    _leaf(G, "Sports Nutrition", "Protein Bars", "Protein Bars", B_PROTEIN,
          {"flavor": ("Chocolate Chip Cookie Dough", "Peanut Butter", "Birthday Cake", "Cookies & Cream"), "capacity": ("12 Count", "6 Count")},
          22, 0.4, ("20 grams of protein", "low sugar", "high fiber", "individually wrapped")),
    _leaf(G, "Baby Food", "Baby Food Pouches", "Baby Food Pouches", B_BABY_FOOD,
          {"flavor": ("Apple Banana", "Pear Spinach", "Sweet Potato", "Mango", "Blueberry Oat"), "age_range": ("0-12 Months", "1-3 Years")},
          15, 0.4, ("organic fruits and vegetables", "no added sugar", "BPA-free pouch", "pack of 12")),
    _leaf(G, "Baby Food", "Infant Formula", "Infant Formula", B_FORMULA,
          {"capacity": ("30.8 oz", "12.4 oz", "20.5 oz"), "age_range": ("0-12 Months",)},
          35, 0.35, ("DHA for brain development", "easy to digest", "non-GMO", "closest to breast milk")),
    _leaf(G, "Pantry", "Freeze-Dried Meals", "Freeze-Dried Meal", B_CAMP_FOOD,
          {"flavor": ("Beef Stroganoff", "Chicken Teriyaki", "Mac & Cheese", "Chili Mac", "Pad Thai")},
          12, 0.35, ("just add hot water", "30-year shelf life", "two servings per pouch", "lightweight for backpacking")),
)

PROJECTS: dict[str, tuple[str, ...]] = {
    "home office": (
        "Desks", "Standing Desks", "Office Chairs", "Monitors", "Keyboards", "Computer Mice",
        "Desk Lamps", "Webcams", "Headsets", "Monitor Stands", "Laptop Stands", "USB Hubs",
        "Surge Protectors", "Desk Organizers", "Footrests", "Whiteboards", "Filing Cabinets",
        "Notebooks", "Printers",
    ),
    "camping": (
        "Tents", "Sleeping Bags", "Sleeping Pads", "Camping Stoves", "Headlamps", "Camping Lanterns",
        "Coolers", "Hiking Backpacks", "Water Bottles", "Camp Chairs", "Hammocks", "Trekking Poles",
        "First Aid Kits", "Multi-Tools", "Power Banks", "Hiking Boots", "Rain Jackets", "Sunscreens",
        "Trail Mix", "Freeze-Dried Meals",
    ),
    "baking": (
        "Mixing Bowls", "Baking Sheets", "Stand Mixers", "Hand Mixers", "Measuring Cups", "Rolling Pins",
        "Oven Mitts", "Cake Pans", "Muffin Pans", "Cooling Racks", "Pie Dishes", "Spatulas",
        "Kitchen Scales", "Parchment Paper", "Aprons", "Flour", "Chocolate Chips", "Vanilla Extract",
        "Sugar", "Sprinkles", "Cake Mix",
    ),
    "painting": (
        "Paint Brushes", "Paint Rollers", "Paint Trays", "Painter's Tape", "Drop Cloths", "Interior Paint",
        "Primers", "Putty Knives", "Sandpaper", "Spackle", "Caulk Guns", "Step Ladders",
        "Safety Glasses", "Work Gloves",
    ),
    "fitness": (
        "Yoga Mats", "Dumbbells", "Kettlebells", "Resistance Bands", "Jump Ropes", "Foam Rollers",
        "Pull-Up Bars", "Ab Rollers", "Exercise Bikes", "Fitness Trackers", "Smartwatches",
        "Shaker Bottles", "Protein Powder", "Protein Bars", "Water Bottles", "Running Shoes",
        "Athletic Shorts", "Sports Bras", "Gym Bags", "Earbuds", "Electrolyte Drink Mix",
    ),
    "nursery": (
        "Cribs", "Crib Mattresses", "Crib Sheets", "Changing Pads", "Changing Tables", "Nursery Gliders",
        "Swaddle Blankets", "Diaper Pails", "High Chairs", "Baby Monitors", "Night Lights", "Diaper Bags",
        "Baby Bodysuits", "Baby Lotions", "Baby Wipes", "Diaper Creams", "Play Mats", "Crib Mobiles",
        "Stuffed Animals", "Humidifiers",
    ),
}

# --------------------------------------------------------------------------- text pools

# Series / model-line words placed between brand and noun, per department.
SERIES_WORDS: dict[str, tuple[str, ...]] = {
    E: ("Pro", "Max", "Nano", "Ultra", "Lite", "Plus", "Air", "Core", "Edge", "Flex", "Neo", "Prime", "Studio", "Go", "One"),
    H: ("Classic", "Essentials", "Signature", "Pro", "Premium", "Everyday", "Artisan", "Select", "Heritage", "Modern", "Chef", "Home"),
    C: ("Essential", "Classic", "Everyday", "Active", "Original", "Performance", "Heritage", "Comfort", "Flex", "Trail", "Core", "Studio"),
    B: ("Daily", "Gentle", "Pure", "Hydra", "Radiant", "Essentials", "Classic", "Botanical", "Advanced", "Sensitive", "Ultra", "Calm"),
    S: ("Trail", "Summit", "Peak", "Pro", "Basecamp", "Ridge", "Explorer", "Active", "Core", "Elite", "Venture", "Alpine"),
    O: ("Pro", "Essentials", "Classic", "Executive", "Studio", "Flex", "Premium", "Ergo", "Select", "Everyday", "Smart", "Works"),
    T: ("Classic", "Junior", "Deluxe", "Adventure", "Discovery", "Creative", "Mini", "Super", "Explorer", "Starter", "Party", "Dream"),
    TL: ("Pro", "Max", "Contractor", "Heavy Duty", "Professional", "Select", "Premium", "Elite", "Xtreme", "Classic", "Ultra", "Precision"),
    G: ("Organic", "Original", "Classic", "Simply", "Harvest", "Select", "Family Size", "Reserve", "Farmhouse", "Naturals", "Gourmet", "Pure"),
}

# Extra feature phrases every leaf of a department may draw from.
DEPARTMENT_FEATURES: dict[str, tuple[str, ...]] = {
    E: ("18-month warranty", "energy-efficient design"),
    H: ("easy to clean", "1-year warranty"),
    C: ("machine washable", "true-to-size fit"),
    B: ("cruelty free", "dermatologist approved"),
    S: ("durable outdoor construction", "lifetime warranty"),
    O: ("sturdy construction", "great for home or office"),
    T: ("safety tested materials", "gift-ready packaging"),
    TL: ("jobsite tough", "3-year limited warranty"),
    G: ("resealable packaging", "made in small batches"),
}

# Optional second description sentence, per department.
CLOSING_SENTENCES: dict[str, tuple[str, ...]] = {
    E: ("Backed by an 18-month warranty.", "Works with most phones, tablets and laptops.", "A reliable upgrade for work and travel."),
    H: ("Built to last through years of everyday use.", "Makes a thoughtful housewarming gift.", "Easy to clean and simple to store."),
    C: ("Machine wash cold and tumble dry low.", "Designed for comfort from morning to night.", "A versatile staple for every wardrobe."),
    B: ("Suitable for daily use on all skin types.", "Free of parabens and phthalates.", "Loved by shoppers for its gentle feel."),
    S: ("Built for weekend trips and long expeditions alike.", "Tested in the field by outdoor enthusiasts.", "Ready for your next adventure."),
    O: ("A smart addition to any workspace.", "Helps you stay organized and productive.", "Built for long days at the desk."),
    T: ("Makes a great birthday or holiday gift.", "Encourages imaginative, screen-free play.", "Meets all applicable toy safety standards."),
    TL: ("Trusted by professionals and DIYers.", "Built for jobsite durability.", "Makes quick work of weekend projects."),
    G: ("Store in a cool, dry place.", "Perfect for the pantry or on the go.", "Made with simple, recognizable ingredients."),
}

# Third-party sellers that sometimes list a brand's products instead of the brand store.
RESELLER_STORES: tuple[str, ...] = (
    "BestValue Direct", "Prime Outlet Co", "HomeGoods Depot", "TechDeals Warehouse",
    "Everyday Supply Co", "Summit Retail", "Blue Harbor Trading", "Maple Street Market",
)


# (leaf, attribute, value) triples that no product of the leaf may carry: values of other
# kinds of product that a catalog-wide value list would hand out.
IMPLAUSIBLE_VALUES: tuple[tuple[str, str, str], ...] = (
    ("Sleeping Bags", "size", "College Ruled"),
    ("Sleeping Bags", "size", "80 Grit"),
    ("Sleeping Bags", "size", "48 Colors"),
    ("Sleeping Pads", "size", "6 Cup"),
    ("Sleeping Pads", "size", "2-Slice"),
    ("Coolers", "color", "Dark Wash"),
    ("Hiking Backpacks", "color", "Blackest Black"),
    ("Tents", "color", "Clear Colors"),
    ("Exercise Bikes", "color", "Soft White"),
    ("Spatulas", "material", "Turkish Cotton"),
    ("Spatulas", "material", "Down Fill"),
    ("Spatulas", "material", "Faux Leather"),
    ("Spatulas", "material", "Cashmere"),
    ("Skillets", "material", "Cork"),
    ("Skillets", "material", "Innerspring"),
    ("Rolling Pins", "material", "Synthetic Fill"),
    ("Rolling Pins", "material", "Innerspring"),
    ("Crib Sheets", "material", "Titanium"),
    ("Crib Sheets", "material", "Cast Iron"),
    ("Crib Sheets", "material", "Nonstick"),
    ("Bed Sheets", "material", "Titanium"),
    ("Bed Sheets", "material", "BPA-Free Plastic"),
    ("Bath Towels", "material", "Innerspring"),
    ("Bath Towels", "material", "Enameled Cast Iron"),
    ("Webcams", "connector_type", "Lightning"),
    ("Keyboards", "connector_type", "Lightning"),
    ("Candles", "color", "Blackest Black"),
    ("Candles", "color", "Dark Wash"),
    ("Lipsticks", "color", "Stainless Steel"),
    ("Lipsticks", "color", "Black/White"),
    ("Diaper Bags", "color", "Stainless Steel"),
    ("Notebooks", "color", "Daylight"),
    ("Men's Jeans", "size", "2 inch"),
    ("Men's Jeans", "size", "120 Grit"),
    ("Board Games", "age_range", "0-12 Months"),
    ("Jigsaw Puzzles", "age_range", "0-12 Months"),
    ("Protein Powder", "flavor", "BBQ"),
    ("Protein Powder", "flavor", "Pad Thai"),
    ("Cake Mix", "flavor", "Jalapeno"),
    ("Cake Mix", "flavor", "Chicken Teriyaki"),
    ("Coffee Beans", "flavor", "Salt & Vinegar"),
    ("Tea", "flavor", "Beef Stroganoff"),
    ("Potato Chips", "flavor", "Earl Grey"),
)


def leaf_by_name(l3: str) -> Leaf:
    """The leaf named `l3`; KeyError when there is none."""
    for leaf in LEAVES:
        if leaf.l3 == l3:
            return leaf
    raise KeyError(f"unknown leaf category {l3!r}")


def validate_taxonomy() -> None:
    """Raise ValueError when the taxonomy breaks one of its rules (see module doc)."""
    seen: set[str] = set()
    for leaf in LEAVES:
        where = f"leaf {leaf.l3!r}"
        if leaf.l3 in seen:
            raise ValueError(f"{where}: duplicate leaf name")
        seen.add(leaf.l3)
        if leaf.l1 not in DEPARTMENTS:
            raise ValueError(f"{where}: unknown department {leaf.l1!r}")
        if not 6 <= len(leaf.brands) <= 12:
            raise ValueError(f"{where}: needs 6-12 distinct brands, has {len(leaf.brands)}")
        if leaf.price_median <= 0 or not 0 < leaf.price_sigma < 1.5:
            raise ValueError(f"{where}: bad price parameters")
        if len(leaf.features) < 4:
            raise ValueError(f"{where}: needs at least 4 feature phrases")
        for name, values in leaf.attributes:
            if name not in ATTRIBUTE_COLUMNS:
                raise ValueError(f"{where}: unknown attribute {name!r}")
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{where}: attribute {name!r} needs distinct values")
        if len(set(leaf.attribute_names)) != len(leaf.attributes):
            raise ValueError(f"{where}: attribute listed twice")
        if not any(len(values) >= 2 for _, values in leaf.attributes):
            raise ValueError(f"{where}: needs an attribute with at least two values (a variant choice)")
        texts = (leaf.l1, leaf.l2, leaf.l3, leaf.noun) + leaf.brands + leaf.features
        texts += tuple(v for _, values in leaf.attributes for v in values)
        for text in texts:
            if not text or text != text.strip() or any(ch in text for ch in "{}>\n"):
                raise ValueError(f"{where}: bad text {text!r}")
    for l3, attribute, value in IMPLAUSIBLE_VALUES:
        if l3 not in seen:
            raise ValueError(f"IMPLAUSIBLE_VALUES: unknown leaf {l3!r}")
        if value in (leaf_by_name(l3).attribute_values(attribute) or ()):
            raise ValueError(f"leaf {l3!r}: implausible {attribute} {value!r} is in its vocabulary")
    for project, leaves in PROJECTS.items():
        if len(set(leaves)) < 12:
            raise ValueError(f"project {project!r}: needs at least 12 leaves")
        for name in leaves:
            if name not in seen:
                raise ValueError(f"project {project!r}: unknown leaf {name!r}")
