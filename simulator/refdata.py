"""Reference data for a UK company: names, places, phone ranges, companies, products.

Kept small on purpose: at large scale many people share a name, which is what makes identity
resolution hard in real life. Every phone range below was checked with ``phonenumbers``
(region GB): numbers drawn from it are valid and every format the simulator writes parses back to
the same E.164 number. Email domains live under the reserved ``example.*`` names so no simulated
address can belong to a real mailbox.
"""

from __future__ import annotations

# (name, weight). Accented names are rare but present: they drive the accent variants and the
# wrong-encoding lines.
FIRST_NAMES: list[tuple[str, float]] = [
    ("Oliver", 3), ("George", 3), ("Harry", 3), ("Jack", 3), ("Jacob", 2), ("Noah", 2), ("Charlie", 2),
    ("Thomas", 3), ("Oscar", 2), ("William", 3), ("James", 4), ("Robert", 3), ("Michael", 3), ("David", 4),
    ("Richard", 3), ("Joseph", 2), ("Christopher", 2), ("Daniel", 3), ("Matthew", 3), ("Anthony", 2),
    ("Andrew", 3), ("Stephen", 2), ("Edward", 2), ("Samuel", 2), ("Benjamin", 2), ("Alexander", 2),
    ("Nicholas", 2), ("Jonathan", 2), ("Timothy", 1), ("Frederick", 1), ("Henry", 2), ("Theodore", 1),
    ("Peter", 2), ("Paul", 2), ("Mark", 2), ("Simon", 2), ("Ian", 1), ("Gareth", 1), ("Rhys", 1),
    ("Callum", 1), ("Liam", 2), ("Ryan", 2), ("Adam", 2), ("Luke", 2), ("Mohammed", 2), ("Ali", 1),
    ("Arjun", 1), ("Ravi", 1), ("Wei", 1), ("Kenji", 1), ("André", 0.5), ("José", 0.5), ("François", 0.3),
    ("Björn", 0.3), ("Søren", 0.2), ("Jürgen", 0.2),
    ("Olivia", 3), ("Amelia", 3), ("Isla", 2), ("Ava", 2), ("Emily", 3), ("Sophie", 2), ("Grace", 2),
    ("Elizabeth", 3), ("Margaret", 2), ("Katherine", 2), ("Jennifer", 2), ("Patricia", 1), ("Susan", 2),
    ("Rebecca", 2), ("Victoria", 2), ("Charlotte", 3), ("Abigail", 1), ("Deborah", 1), ("Sarah", 3),
    ("Emma", 3), ("Hannah", 2), ("Laura", 2), ("Rachel", 2), ("Jessica", 2), ("Lucy", 2), ("Chloe", 2),
    ("Megan", 2), ("Holly", 1), ("Amy", 2), ("Anna", 2), ("Helen", 2), ("Claire", 2), ("Fiona", 1),
    ("Priya", 1), ("Aisha", 1), ("Fatima", 1), ("Mei", 1), ("Yuki", 1), ("Siobhan", 1), ("Niamh", 1),
    ("Zoë", 0.6), ("Chloé", 0.4), ("Renée", 0.4), ("Noémie", 0.3), ("Inès", 0.3), ("Hélène", 0.3),
]

# One nickname per formal name keeps the variant a pure function of the name.
NICKNAMES: dict[str, str] = {
    "Robert": "Bob", "William": "Bill", "James": "Jim", "Richard": "Rick", "Michael": "Mike",
    "Thomas": "Tom", "Joseph": "Joe", "Christopher": "Chris", "Daniel": "Dan", "Matthew": "Matt",
    "Anthony": "Tony", "Andrew": "Andy", "Stephen": "Steve", "Edward": "Ted", "Samuel": "Sam",
    "Benjamin": "Ben", "Alexander": "Alex", "Nicholas": "Nick", "Jonathan": "Jon", "Timothy": "Tim",
    "Frederick": "Fred", "Henry": "Harry", "Theodore": "Theo", "David": "Dave", "Peter": "Pete",
    "Elizabeth": "Liz", "Margaret": "Maggie", "Katherine": "Kate", "Jennifer": "Jen", "Patricia": "Pat",
    "Susan": "Sue", "Rebecca": "Becky", "Victoria": "Vicky", "Charlotte": "Lottie", "Abigail": "Abby",
    "Deborah": "Debbie", "Jessica": "Jess", "Oliver": "Ollie", "Samantha": "Sam",
}

LAST_NAMES: list[tuple[str, float]] = [
    ("Smith", 6), ("Jones", 5), ("Williams", 4), ("Taylor", 4), ("Brown", 4), ("Davies", 3), ("Evans", 3),
    ("Wilson", 3), ("Thomas", 3), ("Johnson", 3), ("Roberts", 3), ("Robinson", 2), ("Thompson", 2),
    ("Wright", 2), ("Walker", 2), ("White", 2), ("Edwards", 2), ("Hughes", 2), ("Green", 2), ("Hall", 2),
    ("Lewis", 2), ("Harris", 2), ("Clarke", 2), ("Patel", 3), ("Jackson", 2), ("Wood", 2), ("Turner", 2),
    ("Martin", 2), ("Cooper", 2), ("Hill", 2), ("Ward", 2), ("Morris", 2), ("Moore", 2), ("Clark", 2),
    ("Lee", 2), ("King", 2), ("Baker", 2), ("Harrison", 2), ("Morgan", 2), ("Allen", 2), ("James", 1),
    ("Scott", 2), ("Phillips", 1), ("Watson", 1), ("Davis", 1), ("Parker", 1), ("Price", 1), ("Bennett", 1),
    ("Young", 1), ("Griffiths", 1), ("Mitchell", 1), ("Kelly", 1), ("Cook", 1), ("Carter", 1),
    ("Richardson", 1), ("Bailey", 1), ("Collins", 1), ("Bell", 1), ("Shaw", 1), ("Murphy", 1), ("Miller", 1),
    ("Cox", 1), ("Richards", 1), ("Khan", 2), ("Marshall", 1), ("Anderson", 1), ("Simpson", 1), ("Ellis", 1),
    ("Adams", 1), ("Singh", 2), ("Begum", 1), ("Wilkinson", 1), ("Foster", 1), ("Chapman", 1), ("Powell", 1),
    ("Webb", 1), ("Rogers", 1), ("Gray", 1), ("Mason", 1), ("Ali", 1), ("Hunt", 1), ("Hussain", 1),
    ("Campbell", 1), ("Matthews", 1), ("Owen", 1), ("Palmer", 1), ("Holmes", 1), ("Mills", 1), ("Barnes", 1),
    ("Knight", 1), ("Lloyd", 1), ("Butler", 1), ("Russell", 1), ("Barker", 1), ("Fisher", 1), ("Stevens", 1),
    ("Jenkins", 1), ("Murray", 1), ("Dixon", 1), ("Harvey", 1), ("Graham", 1), ("Pearson", 1), ("Ahmed", 1),
    ("Fletcher", 1), ("Walsh", 1), ("Kaur", 1), ("Gibson", 1), ("Howard", 1), ("Andrews", 1), ("Stewart", 1),
    ("Elliott", 1), ("Reynolds", 1), ("Saunders", 1), ("Payne", 1), ("Fox", 1), ("Ford", 1), ("Pearce", 1),
    ("Day", 1), ("Brooks", 1), ("West", 1), ("Lawrence", 1), ("Cole", 1), ("Atkinson", 1), ("Bradley", 1),
    ("Spencer", 1), ("Gill", 1), ("Dawson", 1), ("Ball", 1), ("Burton", 1), ("O'Brien", 1), ("O'Neill", 1),
    ("Chen", 1), ("Wang", 1), ("Nguyen", 1), ("Kowalski", 1), ("Rossi", 1),
    ("Müller", 0.4), ("García", 0.5), ("Núñez", 0.3), ("Côté", 0.3), ("Pérez", 0.4), ("Gómez", 0.4),
    ("Hernández", 0.3), ("Lefèvre", 0.3), ("Sørensen", 0.2), ("Jäger", 0.2),
]

# Accented spelling -> how an ASCII-only form (or a hurried typist) writes it.
ACCENT_FOLD: dict[str, str] = {
    "André": "Andre", "José": "Jose", "François": "Francois", "Björn": "Bjorn", "Søren": "Soren",
    "Jürgen": "Jurgen", "Zoë": "Zoe", "Chloé": "Chloe", "Renée": "Renee", "Noémie": "Noemie",
    "Inès": "Ines", "Hélène": "Helene", "Müller": "Muller", "García": "Garcia", "Núñez": "Nunez",
    "Côté": "Cote", "Pérez": "Perez", "Gómez": "Gomez", "Hernández": "Hernandez", "Lefèvre": "Lefevre",
    "Sørensen": "Sorensen", "Jäger": "Jager",
}

# (city, region, weight, postcode areas, area code, leading digit of the local number, local length)
CITIES: list[tuple[str, str, float, tuple[str, ...], str, str, int]] = [
    ("London", "London", 20, ("E", "N", "SE", "SW", "W", "NW", "EC", "WC"), "020", "7", 8),
    ("Manchester", "North West", 6, ("M",), "0161", "4", 7),
    ("Birmingham", "West Midlands", 7, ("B",), "0121", "4", 7),
    ("Leeds", "Yorkshire", 4.5, ("LS",), "0113", "4", 7),
    ("Sheffield", "Yorkshire", 3.5, ("S",), "0114", "2", 7),
    ("Nottingham", "East Midlands", 3, ("NG",), "0115", "9", 7),
    ("Leicester", "East Midlands", 2.5, ("LE",), "0116", "2", 7),
    ("Bristol", "South West", 4, ("BS",), "0117", "9", 7),
    ("Reading", "South East", 2.5, ("RG",), "0118", "9", 7),
    ("Edinburgh", "Scotland", 3.5, ("EH",), "0131", "2", 7),
    ("Glasgow", "Scotland", 4.5, ("G",), "0141", "3", 7),
    ("Liverpool", "North West", 4, ("L",), "0151", "2", 7),
    ("Newcastle upon Tyne", "North East", 3, ("NE",), "0191", "2", 7),
    ("Cardiff", "Wales", 3, ("CF",), "029", "2", 8),
    ("Belfast", "Northern Ireland", 2.5, ("BT",), "028", "9", 8),
    ("Southampton", "South East", 2.5, ("SO",), "023", "8", 8),
    ("Coventry", "West Midlands", 2, ("CV",), "024", "7", 8),
    ("Brighton", "South East", 2, ("BN",), "01273", "6", 6),
    ("Oxford", "South East", 1.5, ("OX",), "01865", "2", 6),
    ("Cambridge", "East of England", 1.5, ("CB",), "01223", "3", 6),
    ("Norwich", "East of England", 1.5, ("NR",), "01603", "6", 6),
    ("York", "Yorkshire", 1.2, ("YO",), "01904", "6", 6),
    ("Exeter", "South West", 1.2, ("EX",), "01392", "2", 6),
    ("Bath", "South West", 1, ("BA",), "01225", "4", 6),
    ("Aberdeen", "Scotland", 1.5, ("AB",), "01224", "3", 6),
    ("Swansea", "Wales", 1.5, ("SA",), "01792", "6", 6),
    ("Derby", "East Midlands", 1.5, ("DE",), "01332", "3", 6),
    ("Plymouth", "South West", 1.5, ("PL",), "01752", "2", 6),
    ("Hull", "Yorkshire", 1.5, ("HU",), "01482", "3", 6),
    ("Stoke-on-Trent", "West Midlands", 1.2, ("ST",), "01782", "2", 6),
]

# Mobile ranges 071xx-075xx and 078xx: every number in them is valid.
MOBILE_SECOND_DIGITS = ("1", "2", "3", "4", "5", "8")

POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # the inward code never uses C I K M O V

PRIMARY_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com", "inbox.example.net")
# Disjoint from the primary ones, so an "other address" can never equal someone's main address.
ALT_DOMAINS = ("home.example.org", "post.example.com", "me.example.net")
OWN_COMPANY_DOMAIN = "ourco.example.com"
COMPANY_DOMAIN_SUFFIX = ".example.com"  # customer companies: <name>.example.com
SHARED_MAILBOXES = ("info", "office", "accounts")

COMPANY_WORDS = (
    "Northern", "Summit", "Bright", "Blue", "Crown", "Oak", "Harbour", "Pioneer", "Apex", "Riverside",
    "Granite", "Silver", "Kingfisher", "Meridian", "Beacon", "Thames", "Pennine", "Cedar", "Falcon",
    "Orchard", "Atlas", "Vantage", "Evergreen", "Highland", "Redwood",
)
COMPANY_TRADES = (
    "Logistics", "Engineering", "Foods", "Consulting", "Interiors", "Print", "Digital", "Motors",
    "Healthcare", "Builders", "Analytics", "Textiles", "Media", "Energy", "Dental", "Legal", "Catering",
    "Labs", "Studios", "Supplies",
)
COMPANY_SUFFIXES = ("Ltd", "Ltd", "Ltd", "plc", "LLP", "& Co", "Group")

PRODUCT_CATEGORIES = (
    "Office", "Electronics", "Furniture", "Kitchen", "Garden", "Books", "Clothing", "Sports", "Toys", "Beauty",
)
PRODUCT_ADJECTIVES = (
    "Classic", "Pro", "Compact", "Deluxe", "Eco", "Smart", "Premium", "Essential", "Ultra", "Heritage",
)
PRODUCT_NOUNS = {
    "Office": ("Desk Organiser", "Notebook Set", "Stapler", "Label Printer", "Paper Shredder"),
    "Electronics": ("Headphones", "Charger", "Speaker", "Webcam", "Monitor"),
    "Furniture": ("Office Chair", "Bookshelf", "Side Table", "Standing Desk", "Sofa"),
    "Kitchen": ("Kettle", "Knife Set", "Blender", "Coffee Grinder", "Cookware Set"),
    "Garden": ("Hose Reel", "Planter", "Lawn Mower", "Bird Feeder", "Garden Bench"),
    "Books": ("Cookbook", "Travel Guide", "Novel", "Atlas", "Diary"),
    "Clothing": ("Raincoat", "Jumper", "Trainers", "Scarf", "Jeans"),
    "Sports": ("Yoga Mat", "Tennis Racket", "Bike Helmet", "Dumbbells", "Running Vest"),
    "Toys": ("Puzzle", "Building Blocks", "Board Game", "Kite", "Doll House"),
    "Beauty": ("Hand Cream", "Shampoo", "Perfume", "Hair Dryer", "Face Mask"),
}

CAMPAIGN_THEMES = (
    "New Year Reset", "Winter Warmers", "Spring Refresh", "Easter Treats", "Summer Sale",
    "Sun, Sea & Savings", "Back to School", "Autumn Edit", "Black Friday", "Christmas Gift Guide",
    "Weekend Deals", "Members' Preview", "New In", "Last Chance", "Customer Favourites",
)
CAMPAIGN_OFFERS: tuple[tuple[str, float], ...] = (
    ("10% off", 10), ("15% off", 15), ("20% off", 20), ("Free delivery", 0), ("New arrivals", 0),
    ("Double loyalty points", 0), ("25% off selected lines", 25),
)

TICKET_SUBJECTS = (
    "Where is my order?", "Item arrived damaged", "Refund request", "Question about my invoice",
    "Change delivery address", "Cannot log in", "Wrong size sent", "Missing item in parcel",
    "Payment failed", "Please cancel my order", "Warranty claim", "Discount code not working",
)
# Non-ASCII subjects for the wrong-encoding lines (the export's Latin-1 bytes).
LATIN1_SUBJECTS = ("Problème de livraison", "Commande non reçue", "Réclamation", "Facture erronée")
GOOD_COMMENTS = ("Thanks, quick and helpful", "Great service", "Sorted, thank you", "Very friendly agent")
BAD_COMMENTS = ("Took far too long", "Still not resolved", "Nobody got back to me", "Had to chase three times")
