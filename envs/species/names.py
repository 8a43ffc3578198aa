"""Word lists that name the generated entities and field values (the text face's phrases).

Every phrase is unique within its list, so the text parser can map a phrase back to its id by exact
matching. A knowledge base picks, per query, a random injective assignment of phrases to entities.
"""

from __future__ import annotations

SPECIES: tuple[tuple[str, str], ...] = (
    ("red lionfish", "Pterois volitans"),
    ("northern snakehead", "Channa argus"),
    ("silver carp", "Hypophthalmichthys molitrix"),
    ("zebra mussel", "Dreissena polymorpha"),
    ("red-eared slider", "Trachemys scripta elegans"),
    ("Burmese python", "Python bivittatus"),
    ("cane toad", "Rhinella marina"),
    ("walking catfish", "Clarias batrachus"),
    ("oscar", "Astronotus ocellatus"),
    ("clownfish", "Amphiprion ocellaris"),
    ("apple snail", "Pomacea maculata"),
    ("red swamp crayfish", "Procambarus clarkii"),
    ("grass carp", "Ctenopharyngodon idella"),
    ("round goby", "Neogobius melanostomus"),
    ("sea lamprey", "Petromyzon marinus"),
    ("Asian swamp eel", "Monopterus albus"),
    ("blue tilapia", "Oreochromis aureus"),
    ("pacu", "Piaractus brachypomus"),
    ("goldfish", "Carassius auratus"),
    ("suckermouth catfish", "Hypostomus plecostomus"),
    ("American bullfrog", "Lithobates catesbeianus"),
    ("green iguana", "Iguana iguana"),
    ("Chinese mitten crab", "Eriocheir sinensis"),
    ("quagga mussel", "Dreissena bugensis"),
)
"""(common name, scientific name) pairs."""

FILMS: tuple[str, ...] = (
    "Reef Patrol",
    "The Deep Tank",
    "Harbor Lights",
    "Blue Lagoon Blues",
    "Coral Kingdom",
    "Swamp Fever",
    "The Last Aquarium",
    "River of Glass",
    "Tidewater",
    "Shell Game",
    "Night Pond",
    "Gulf Stream Kid",
    "Mangrove Road",
    "The Bait Shop",
    "Salt and Sand",
    "Canal Street Tales",
    "Lake Effect",
    "Fins Up",
    "Backwater Heist",
    "The Ballast Run",
    "Bayou Lullaby",
    "Little Fish Big City",
    "Saltwater Summer",
    "The Glass Bowl",
)

PERSONS: tuple[str, ...] = (
    "Ada Marsh",
    "Bruno Keel",
    "Carla Reyes",
    "Dmitri Volk",
    "Elena Sato",
    "Felix Brandt",
    "Greta Lund",
    "Hugo Prado",
    "Ines Okafor",
    "Jonas Weber",
    "Kira Novak",
    "Luis Andrade",
    "Mina Park",
    "Nils Berg",
    "Olga Petrov",
    "Pablo Ruiz",
    "Quinn Hale",
    "Rosa Lima",
    "Sven Holm",
    "Tara Nair",
    "Umar Haddad",
    "Vera Kovac",
    "Wen Li",
    "Yusuf Demir",
)

COUNTRIES: tuple[str, ...] = ("France", "Japan", "Brazil", "Canada", "Nigeria", "Sweden")
AWARDS: tuple[str, ...] = (
    "Golden Reel",
    "Silver Bear",
    "Blue Wave",
    "Jury Prize",
    "Lumen Award",
    "Coral Medal",
)
BORN: tuple[str, ...] = (
    "born in the 1940s",
    "born in the 1950s",
    "born in the 1960s",
    "born in the 1970s",
    "born in the 1980s",
    "born in the 1990s",
)
DECADES: tuple[str, ...] = (
    "released in the 1970s",
    "released in the 1980s",
    "released in the 1990s",
    "released in the 2000s",
    "released in the 2010s",
    "released in the 2020s",
)
GENRES: tuple[str, ...] = ("comedy", "thriller", "documentary", "animation", "drama", "horror")
CAUSES: tuple[str, ...] = (
    "released by pet owners",
    "aquarium trade",
    "ballast water",
    "bait bucket release",
    "stocking for sport",
    "aquaculture escape",
)
GROUPS: tuple[str, ...] = ("fish", "mollusc", "crustacean", "reptile", "amphibian")
AGENCIES: tuple[str, ...] = (
    "USGS NAS",
    "State DNR",
    "Fish and Wildlife Commission",
    "NOAA",
    "EDDMapS",
)
PERIODS: tuple[str, ...] = ("before {year}", "in {year} or later")
"""Period phrases, formatted with the question's cut-off year."""
CUTOFFS: tuple[int, ...] = (2000, 2005, 2010, 2015, 2020)

NUM_ATTR_VALUES: tuple[tuple[int, int], ...] = (
    (len(AWARDS), len(BORN)),
    (len(DECADES), len(GENRES)),
    (len(CAUSES), len(GROUPS)),
    (0, len(PERIODS)),  # agencies: config ``n_agencies``
)
"""Number of values of slots 1 and 2 of each index type (records slot 1 is set by the config)."""

ATTR_PHRASES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (COUNTRIES, AWARDS, BORN),
    (PERSONS, DECADES, GENRES),
    (FILMS, CAUSES, GROUPS),
    (tuple(c for c, _ in SPECIES), AGENCIES, PERIODS),
)
"""Phrase list of each (index type, slot); slot 0 of film/species/records names an entity."""
