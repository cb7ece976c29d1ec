"""Generate `examples/mrpc-sample/`: a small paraphrase data set in MRPC's exact file layout.

Every sentence is made up here, from word lists and templates in this file: invented companies,
people, towns and numbers, put into news-like sentences about ten kinds of event (quarterly
results, takeovers, job cuts, appointments, lawsuits, recalls, share moves, verdicts, council
votes, storms). A pair is

- a paraphrase (label 1): the same facts said twice, with different templates (active/passive,
  clauses reordered, direct/reported speech) or the same template with different word choices
  ("said"/"announced", "Norvale Foods"/"Norvale"). Both sentences write a number the same way
  (but "a $34 million plan" may stand for "34 million dollars"); the form ("$3.2 million",
  "$3,200,000", "12%", "12 percent") changes from pair to pair;
- not a paraphrase (label 0), one of
  - another story (nearly half): a different kind of event about the same company or town, on
    the same day: low word overlap;
  - another company (nearly half): the same kind of event in the same words, word for word, but
    about a company in another line of business (or another town) and with other facts: the
    template's words are shared, the names and numbers are not;
  - a near miss (about 5%): the same facts with the direction turned round (rose/fell,
    convicted/acquitted, cut/add jobs, approved/rejected, agreed to/dropped a deal).

So word overlap alone tells the classes apart only partly (a threshold tuned on train gets 82% on
dev, always answering "paraphrase" 67.5%): half of the negatives share as many words as a
paraphrase does, and a model has to compare the names and numbers in the two sentences.
all-MiniLM-L6-v2 learns that in `bertctl demo`'s short run (bertctl's compact-model defaults:
125 steps, under 3 minutes on two CPU cores) and gets about 99% on dev. About two thirds of
the pairs are paraphrases (MRPC: 67.4%); sentences are 15-30 words.

Harder negatives (one number nudged, one name changed, two companies' roles swapped, another
day; "$3.2 million" vs "$3,200,000" as a paraphrase cue) made a sample that such a run could not
learn at all: it stayed at the majority class. They are left out.

Run it from the repository root:

    python examples/make_mrpc_sample.py              # (re)writes examples/mrpc-sample/
    python examples/make_mrpc_sample.py --out DIR    # somewhere else

Its output is committed. The generator is seeded and uses only the standard library, so
rerunning it reproduces the three files byte for byte (tests/test_examples.py checks that).

Layout, as GLUE's `MRPC/` (tab separated, no quoting, "\\n" line ends):

    train.tsv, dev.tsv   BOM + "Quality  #1 ID  #2 ID  #1 String  #2 String", label in column 0
    test.tsv             "index  #1 ID  #2 ID  #1 String  #2 String", no labels, index 0, 1, ...
"""

from __future__ import annotations

import argparse
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEED = 20240611
SIZES = {"train": 1000, "dev": 200, "test": 200}
POSITIVE_SHARE = 0.675
MIN_WORDS, MAX_WORDS = 15, 30

HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"
TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"

# How a negative is made, and how often each way is picked ("polarity" only for the six kinds
# of event that have one): another company (or town) with the same wording, another kind of
# event about the same company (or town), or the same facts with the direction turned round.
NEGATIVE_CHANGES = {
    "other": 45,
    "event": 45,
    "polarity": 10,
}
# chance the two sentences share a template, for a paraphrase and for each kind of negative
SAME_TEMPLATE = {"paraphrase": 0.25, "other": 1.0, "polarity": 0.55}

# --------------------------------------------------------------------------------------------
# The invented world

COMPANY_STEMS = (
    "Norvale", "Quillon", "Tamsel", "Vexley", "Corvane", "Drossel", "Ambrin", "Feldara",
    "Olvesta", "Brannock", "Sevrin", "Halcyra", "Pendrick", "Orlivo", "Castrell", "Wenlow",
    "Ilvane", "Torbeck", "Yarrowby", "Zentrik", "Kelloran", "Duvessa", "Ravensett", "Lumora",
    "Gallivar", "Brisendal", "Morvath", "Ostrela", "Pelladon", "Quenby", "Rusk Harrow",
    "Silvantis", "Trevallo", "Umbrell", "Valdoria", "Westhaven", "Axmoor", "Belcastro",
    "Cindervale", "Dovrel", "Emberton", "Fallowmere", "Grisande", "Hexton", "Jorvane",
)  # fmt: skip


@dataclass(frozen=True)
class Product:
    name: str  # "space heaters"
    hazard: str  # a noun phrase: "a fire hazard"
    risk: str  # a verb phrase after "could": "overheat and catch fire"


@dataclass(frozen=True)
class Sector:
    name: str  # the company name's last word: "Foods"
    sites: tuple[str, ...]
    products: tuple[Product, ...] = ()
    regulator: str | None = None


SECTORS = (
    Sector(
        "Foods",
        ("processing plant", "bakery", "packing plant"),
        (
            Product("jars of peanut butter", "possible salmonella contamination", "be contaminated with salmonella"),
            Product("bags of frozen spinach", "possible listeria contamination", "carry listeria bacteria"),
            Product("boxes of granola bars", "nuts missing from the label", "contain nuts not listed on the label"),
        ),
        "Food Safety Agency",
    ),
    Sector(
        "Motors",
        ("assembly plant", "engine plant"),
        (
            Product("pickup trucks", "faulty brakes", "lose braking power"),
            Product("family sedans", "a fuel leak", "leak fuel onto a hot engine"),
            Product("electric scooters", "a battery defect", "catch fire while charging"),
        ),
        "Road Vehicle Safety Office",
    ),
    Sector(
        "Appliances",
        ("factory", "distribution center"),
        (
            Product("space heaters", "a fire hazard", "overheat and catch fire"),
            Product("pressure cookers", "a burn hazard", "burst open while in use"),
            Product("dishwashers", "an electrical fault", "short-circuit and start a fire"),
        ),
        "Consumer Product Safety Board",
    ),
    Sector(
        "Electronics",
        ("chip plant", "factory"),
        (
            Product("laptop batteries", "a risk of overheating", "overheat and melt"),
            Product("phone chargers", "a shock hazard", "give users an electric shock"),
            Product("smoke alarms", "a faulty sensor", "fail to detect smoke"),
        ),
        "Consumer Product Safety Board",
    ),
    Sector(
        "Toys",
        ("warehouse", "factory"),
        (
            Product("toy drones", "a battery fire risk", "catch fire while charging"),
            Product("stacking toys", "a choking hazard", "break into small pieces"),
        ),
        "Consumer Product Safety Board",
    ),
    Sector(
        "Pharmaceuticals",
        ("research center", "manufacturing plant"),
        (
            Product("bottles of cough syrup", "a labeling error", "contain the wrong dose"),
            Product("packs of allergy tablets", "a packaging defect", "break open inside the box"),
        ),
        "Drug Standards Office",
    ),
    Sector("Airlines", ("maintenance base", "call center")),
    Sector("Telecom", ("call center", "network operations center")),
    Sector("Steel", ("mill", "rolling mill")),
    Sector("Software", ("development office", "data center")),
    Sector("Mining", ("copper mine", "smelter")),
    Sector("Energy", ("refinery", "power station")),
)  # fmt: skip

FIRST_NAMES = (
    "Maria", "David", "Helen", "Samuel", "Priya", "Thomas", "Ana", "Victor", "Grace", "Daniel",
    "Leah", "Omar", "Irene", "Marcus", "Nadia", "Peter", "Julia", "Felix", "Carmen", "Henry",
    "Rosa", "Ivan", "Elena", "Martin", "Chloe", "Rafael", "Diane", "Gordon", "Yuki", "Hassan",
)  # fmt: skip
SURNAMES = (
    "Brackwell", "Ondrasek", "Taverly", "Vossberg", "Kelmarsh", "Lindvale", "Harrowitz",
    "Coldrey", "Fenwright", "Ashworthy", "Quarrington", "Merrivale", "Pellegrand", "Whitcombe",
    "Drayfield", "Orsolini", "Kastellan", "Mendrake", "Halloway", "Strickmore", "Vantongeren",
    "Oyelaran", "Castellane", "Brodsky-Hale", "Nakamori", "Delvecchi", "Rautenberg", "Solvik",
)  # fmt: skip
TOWNS = (
    "Port Alder", "Hollin Bay", "Redmarsh", "Kelvale", "Ashby Cross", "Marrowgate",
    "Sundry Point", "Oakhollow", "Westmere", "Dunmore Flats", "Bellhaven", "Cray Harbor",
    "Elmhollow", "Fallow Creek", "Granby Ridge", "Larkmoor", "Kestwick", "Pinecastle",
    "Stonebury", "Tillmouth",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ORDINALS = ("first", "second", "third", "fourth")
QUARTER_ENDS = ("March 31", "June 30", "September 30", "December 31")
QUARTER_SPANS = ("January-March", "April-June", "July-September", "October-December")

ROLES = {
    "chief executive": ("chief executive", "chief executive", "chief executive officer"),
    "chief financial officer": ("chief financial officer", "finance chief"),
    "chief operating officer": ("chief operating officer", "chief operating officer"),
    "chairman": ("chairman", "chairman"),
}
CHARGES = (
    "fraud", "securities fraud", "bribery", "tax evasion", "insider trading", "embezzlement",
    "money laundering",
)  # fmt: skip
PLAINTIFFS = (
    "the state attorney general", "a group of former employees", "a pension fund for city workers",
    "the Consumer Protection Office", "a group of shareholders",
)  # fmt: skip
# what a lawsuit is about: after "accusing it of" / after "over"
ISSUES = (
    ("misleading investors about its debts", "misleading statements about the company's debts"),
    ("hiding safety problems with its products", "safety problems it is said to have hidden"),
    ("breaking a long-term supply contract", "a broken long-term supply contract"),
    ("copying a patented battery design", "the copying of a patented battery design"),
    ("overcharging customers for late payments", "fees charged to customers for late payments"),
    ("polluting a river near one of its plants", "pollution of a river near one of its plants"),
)
PROJECTS = (
    "a new light rail line", "a downtown sports arena", "two new fire stations",
    "a water treatment plant", "a bridge over the harbor", "a public library branch",
    "a covered market hall",
)  # fmt: skip
STORMS = ("a winter storm", "heavy thunderstorms", "a tropical storm", "high winds", "an ice storm")
# why profits moved, by polarity: (up forms, down forms), each "its" and "our" versions
RESULT_REASONS = (
    (
        ("helped by strong demand for its products", "thanks to strong demand for its products"),
        ("hurt by weak demand for its products", "as demand for its products weakened"),
    ),
    (
        ("helped by lower costs", "as it brought its costs down"),
        ("hurt by higher costs", "as its costs climbed"),
    ),
    (
        ("driven by growth in Asia", "on the back of growth in Asia"),
        ("dragged down by a slump in Asia", "as sales slumped in Asia"),
    ),
    (
        ("helped by higher prices", "as prices rose"),
        ("hurt by lower prices", "as prices fell"),
    ),
)
# why a share price moved, by polarity; clauses that fit after "after"
STOCK_REASONS = (
    (
        ("the company raised its sales forecast for the year", "it raised its sales forecast for the year"),
        ("the company cut its sales forecast for the year", "it lowered its sales forecast for the year"),
    ),
    (
        ("an analyst upgraded the stock to a buy", "a leading analyst upgraded the stock to a buy"),
        ("an analyst downgraded the stock to a sell", "a leading analyst downgraded the stock to a sell"),
    ),
    (
        ("the company won a large government contract", "it won a large government contract"),
        ("the company lost a large government contract", "it lost a large government contract"),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class World:
    companies: tuple[tuple[str, Sector], ...]  # (stem, sector): "Norvale" + Foods
    people: tuple[str, ...]

    def sector_peers(self, company: tuple[str, Sector]) -> list[tuple[str, Sector]]:
        return [c for c in self.companies if c[1] == company[1] and c != company]


def make_world(rng: random.Random) -> World:
    stems = list(COMPANY_STEMS)
    rng.shuffle(stems)
    companies = tuple((stem, SECTORS[i % len(SECTORS)]) for i, stem in enumerate(stems))
    names = [f"{first} {last}" for first in FIRST_NAMES for last in SURNAMES]
    return World(companies, tuple(rng.sample(names, 80)))


# --------------------------------------------------------------------------------------------
# Numbers, in the forms news copy writes them


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


def _two_digits(x: float) -> float:
    """x rounded to two significant digits."""
    return float(f"{x:.2g}")


def _exponent(x: float) -> int:
    """The decimal exponent: 3.2 -> 0, 450 -> 2, 0.35 -> -1."""
    return int(f"{x:e}".split("e")[1])


def nice(rng: random.Random, low: float, high: float) -> float:
    """A round-looking number (two significant digits) between low and high, its decade drawn
    evenly. Only integer draws and decimal strings, no libm: every platform gets the same."""
    decades = range(_exponent(low), _exponent(high) + 1)
    while True:
        y = float(f"{rng.randint(10, 99)}e{rng.choice(decades) - 1}")
        if low <= y <= high:
            return y


class Number(tuple):
    """The ways to write one number. Both sentences of a pair write it the same way (a paraphrase
    rewords a sentence, it does not reformat its numbers); which way changes from pair to pair."""


def money(millions: float, adjective: bool = False) -> Number:
    """Ways to write an amount of dollars; `adjective`: forms that fit "a ___ plan"."""
    if millions >= 1000:
        b = _fmt(_two_digits(millions / 1000))
        forms = [f"${b} billion", f"${b} billion", f"{b} billion dollars"]
        if millions == int(millions):
            forms.append(f"${int(millions):,} million")
    elif millions >= 1:
        forms = [f"${_fmt(millions)} million"] * 2 + [f"{_fmt(millions)} million dollars"]
        forms.append(f"${round(millions * 1_000_000):,}")
    else:
        n = round(millions * 1_000_000)
        forms = [f"${n:,}", f"${n:,}", f"{n:,} dollars"]
    if adjective:  # the same list, "3.2 million dollars" read as "$3.2 million"
        forms = [form if form.startswith("$") else forms[0] for form in forms]
    return Number(forms)


def count(n: float) -> Number:
    n = int(n)
    if n < 10:
        return Number((SMALL[n], SMALL[n], str(n)))
    if n >= 1_000_000 and n % 100_000 == 0:
        return Number((f"{_fmt(n / 1_000_000)} million", f"{n:,}"))
    return Number((f"{n:,}",))


def percent(p: float) -> Number:
    s = _fmt(p)
    return Number((f"{s} percent", f"{s} percent", f"{s}%", f"{s} per cent"))


def price(p: float) -> Number:
    return Number((f"${p:.2f}",))


def day(d: str) -> tuple[str, ...]:
    return (f"on {d}", d)


# --------------------------------------------------------------------------------------------
# Events: facts, how to say them, and how to change one fact

Facts = dict[str, object]
Slots = dict[str, object]


def company_forms(company: tuple[str, Sector]) -> tuple[str, ...]:
    stem, sector = company
    return (f"{stem} {sector.name}", f"{stem} {sector.name}", stem)


def possessive(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name + ("'" if name.endswith("s") else "'s") for name in names)


def _company(world: World, rng: random.Random, anchor: Facts, needs_products: bool = False):
    company = anchor.get("company")
    if company is not None and (not needs_products or company[1].products):
        return company
    if company is not None:
        return None  # the anchor company cannot have this event
    choices = [c for c in world.companies if c[1].products or not needs_products]
    return rng.choice(choices)


def _other_company(world: World, rng: random.Random, company):
    peers = world.sector_peers(company)
    if not peers or rng.random() < 0.3:
        peers = [c for c in world.companies if c != company]
    return rng.choice(peers)


def _other(rng: random.Random, pool, current):
    return rng.choice([x for x in pool if x != current])


@dataclass(frozen=True)
class Kind:
    name: str
    sample: Callable[[World, random.Random, Facts], Facts | None]
    slots: Callable[[Facts], Slots]
    templates: tuple[str, ...]
    flip: Callable[[Facts], Facts] | None
    """The facts with their polarity turned round (rose/fell, ...), where the event has one."""


def _with(facts: Facts, **changes) -> Facts:
    return {**facts, **changes}


def by(flag: object, yes: object, no: object) -> object:
    """`yes` when the fact holds, else `no`: the wording of a polarity."""
    return yes if flag else no


# --- quarterly results


def results_sample(world, rng, anchor):
    return {
        "company": _company(world, rng, anchor),
        "exec": rng.choice(world.people),
        "quarter": rng.randrange(4),
        "metric": rng.choice(("profit", "profit", "revenue")),
        "amount": nice(rng, 5, 2000),
        "pct": rng.choice((nice(rng, 2, 60), float(rng.randint(2, 45)))),
        "up": rng.random() < 0.6,
        "reason": rng.randrange(len(RESULT_REASONS)),
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def results_slots(f):
    q = f["quarter"]
    up = f["up"]
    why = RESULT_REASONS[f["reason"]][0 if up else 1]
    metric = (
        ("profit", "net income", "earnings") if f["metric"] == "profit" else ("revenue", "sales")
    )
    return {
        "C": company_forms(f["company"]),
        "Cs": possessive(company_forms(f["company"])),
        "exec": f["exec"],
        "q_adj": (f"{ORDINALS[q]}-quarter", f"{ORDINALS[q]}-quarter", QUARTER_SPANS[q]),
        "q_np": (
            f"the {ORDINALS[q]} quarter",
            f"the {ORDINALS[q]} quarter",
            f"the three months to {QUARTER_ENDS[q]}",
            f"the {QUARTER_SPANS[q]} quarter",
        ),
        "m": metric,
        "A": money(f["amount"]),
        "P": percent(f["pct"]),
        "rose": by(
            up, ("rose", "climbed", "increased", "grew"), ("fell", "dropped", "declined", "slipped")
        ),
        "rise_n": ("rise", "increase", "gain") if up else ("drop", "decline", "fall"),
        "up": "up" if up else "down",
        "why": why,
        "why_our": tuple(w.replace("its", "our").replace(" it ", " we ") for w in why),
        "day": day(f["day"]),
    }


def results_flip(f):
    return _with(f, up=not f["up"])  # its profit or revenue rose / fell


RESULTS = Kind(
    "results",
    results_sample,
    results_slots,
    (
        "{C} said {day} that its {q_adj} {m} {rose} {P} to {A}, {why}.",
        "{q_adj} {m} at {C} {rose} {P} from a year earlier to {A}, {why}, the company [said|reported] {day}.",
        "{C} [reported|posted] {m} of {A} for {q_np} {day}, {up} {P} from a year earlier, {why}.",
        '"Our {m} {rose} {P} to {A} in {q_np}, {why_our}," {exec}, chief executive of {C}, said {day}.',
        "{exec}, the chief executive of {C}, said {day} that the company's {m} for {q_np} {rose} {P} to {A}, {why}.",
        "A {P} {rise_n} in {q_adj} {m}, to {A}, was reported by {C} {day}, {why}.",
    ),
    results_flip,
)


# --- takeovers


def takeover_sample(world, rng, anchor):
    buyer = _company(world, rng, anchor)
    return {
        "company": buyer,
        "buyer": buyer,
        "target": _other_company(world, rng, buyer),
        "amount": nice(rng, 40, 9000),
        "pay": rng.randrange(3),
        "agreed": rng.random() < 0.75,
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


PAY = (("in cash",), ("in stock", "in shares"), ("in cash and stock", "in cash and shares"))


def takeover_slots(f):
    yes = f["agreed"]
    return {
        "B": company_forms(f["buyer"]),
        "T": company_forms(f["target"]),
        "A": money(f["amount"]),
        "pay": PAY[f["pay"]],
        "buy_v": by(
            yes,
            (
                "agreed to buy",
                "agreed to acquire",
                "reached a deal to buy",
                "struck a deal to acquire",
            ),
            (
                "dropped its plan to buy",
                "abandoned a deal to acquire",
                "walked away from a deal to buy",
            ),
        ),
        "be_bought": by(
            yes,
            ("will be bought", "will be acquired", "is to be bought"),
            ("will no longer be bought", "will not be acquired after all"),
        ),
        "accepted": ("accepted", "approved") if yes else ("rejected", "turned down"),
        "pay_v": by(
            yes, ("will pay", "has agreed to pay"), ("will not pay", "is no longer willing to pay")
        ),
        "day": day(f["day"]),
    }


def takeover_flip(f):
    return _with(f, agreed=not f["agreed"])  # a deal agreed / dropped


TAKEOVER = Kind(
    "takeover",
    takeover_sample,
    takeover_slots,
    (
        "{B} said {day} that it had {buy_v} its rival {T} for {A} {pay}, [in a deal that needs|subject to] approval from regulators.",
        "{T} {be_bought} by {B} for {A} {pay}, the two companies said in a joint statement {day}.",
        "The board of {T} {accepted} an offer of {A} {pay} from {B}, [the company said|according to a company statement] {day}.",
        "{B} {pay_v} {A} {pay} for {T}, [the companies said|the two firms announced] {day}, in a deal that still needs approval from regulators.",
        "In a move [announced|disclosed] {day}, {B} {buy_v} {T} for {A} {pay}, pending approval from regulators.",
    ),
    takeover_flip,
)


# --- job cuts (and hiring)


def jobs_sample(world, rng, anchor):
    company = _company(world, rng, anchor)
    return {
        "company": company,
        "n": nice(rng, 40, 6000),
        "site": rng.choice(company[1].sites),
        "town": anchor.get("town") or rng.choice(TOWNS),
        "month": rng.choice(MONTHS),
        "cut": rng.random() < 0.7,
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def jobs_slots(f):
    cut = f["cut"]
    return {
        "C": company_forms(f["company"]),
        "Cs": possessive(company_forms(f["company"])),
        "N": count(f["n"]),
        "site": f["site"],
        "L": f["town"],
        "month": f["month"],
        "jobs": ("jobs", "jobs", "positions"),
        "cut_v": ("cut", "eliminate") if cut else ("add", "create"),
        "cut_ing": ("cutting", "eliminating") if cut else ("adding", "creating"),
        "cut_pass": ("cut", "eliminated") if cut else ("added", "created"),
        "day": day(f["day"]),
    }


def jobs_flip(f):
    return _with(f, cut=not f["cut"])  # jobs cut / added


JOBS = Kind(
    "jobs",
    jobs_sample,
    jobs_slots,
    (
        "{C} [will|plans to] {cut_v} {N} {jobs} at its {site} in {L} by {month}, [the company said|a company spokeswoman said] {day}.",
        "{N} {jobs} will be {cut_pass} at the {site} {C} runs in {L} by {month}, the company [said|announced] {day}.",
        "{C} said {day} that it would {cut_v} {N} {jobs} at its {L} {site} by {month}.",
        '"We will be {cut_ing} {N} {jobs} at our {site} in {L} by {month}," a {C} spokesman said {day}.',
        "Workers at {Cs} {site} in {L} were told {day} that {N} {jobs} would be {cut_pass} there by {month}.",
    ),
    jobs_flip,
)


# --- appointments


def appoint_sample(world, rng, anchor):
    new, old = rng.sample(world.people, 2)
    return {
        "company": _company(world, rng, anchor),
        "new": new,
        "old": old,
        "role": rng.choice(tuple(ROLES)),
        "date": (rng.choice(MONTHS), rng.randint(1, 28)),
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def appoint_slots(f):
    month, d = f["date"]
    return {
        "C": company_forms(f["company"]),
        "Cs": possessive(company_forms(f["company"])),
        "new": f["new"],
        "old": f["old"],
        "role": ROLES[f["role"]],
        "date": f"{month} {d}",
        "day": day(f["day"]),
    }


APPOINT = Kind(
    "appoint",
    appoint_sample,
    appoint_slots,
    (
        "{C} said {day} that it had [named|appointed|chosen] {new} to succeed {old} as {role}, [effective|starting] {date}.",
        "{new} will [replace|succeed|take over from] {old} as {role} of {C} on {date}, the company [said|announced] {day}.",
        "{old} will step down as {role} of {C} on {date} and [will be|is to be] replaced by {new}, the company said {day}.",
        "{C} {day} [named|appointed] {new} as its new {role}, taking over from {old} on {date}.",
        "Starting {date}, {Cs} {role} will be {new}, who replaces {old}, [the company said|according to a company statement] {day}.",
    ),
    None,
)


# --- lawsuits


def suit_sample(world, rng, anchor):
    defendant = _company(world, rng, anchor)
    if rng.random() < 0.5:
        plaintiff = _other_company(world, rng, defendant)
    else:
        plaintiff = rng.choice(PLAINTIFFS)
    return {
        "plaintiff": plaintiff,
        "defendant": defendant,
        "company": defendant,
        "issue": rng.randrange(len(ISSUES)),
        "amount": nice(rng, 0.3, 900),
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def suit_slots(f):
    plaintiff = f["plaintiff"]
    return {
        "X": company_forms(plaintiff) if isinstance(plaintiff, tuple) else plaintiff,
        "Y": company_forms(f["defendant"]),
        "issue_v": ISSUES[f["issue"]][0],
        "issue_n": ISSUES[f["issue"]][1],
        "A": money(f["amount"]),
        "day": day(f["day"]),
    }


SUIT = Kind(
    "suit",
    suit_sample,
    suit_slots,
    (
        "{X} [sued|filed a lawsuit against] {Y} {day}, accusing it of {issue_v} and seeking {A} in damages.",
        "{Y} was sued by {X} {day} over {issue_n}, [with the suit seeking|in a case that seeks] {A} in damages.",
        "In a lawsuit filed {day}, {X} accused {Y} of {issue_v} and asked for {A} in damages.",
        "{X} is seeking {A} from {Y} in a lawsuit [filed|brought] {day} that accuses the company of {issue_v}.",
        "{X} said {day} it had taken {Y} to court over {issue_n}, seeking {A} in damages.",
    ),
    None,
)


# --- product recalls


def recall_sample(world, rng, anchor):
    company = _company(world, rng, anchor, needs_products=True)
    if company is None:
        return None
    return {
        "company": company,
        "product": rng.choice(company[1].products),
        "n": rng.choice((nice(rng, 3000, 900_000), nice(rng, 1_000_000, 4_000_000))),
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def recall_slots(f):
    product = f["product"]
    return {
        "C": company_forms(f["company"]),
        "N": count(f["n"]),
        "product": product.name,
        "hazard": product.hazard,
        "risk": product.risk,
        "R": f["company"][1].regulator,
        "day": day(f["day"]),
    }


RECALL = Kind(
    "recall",
    recall_sample,
    recall_slots,
    (
        "{C} is recalling {N} {product} because of {hazard}, the {R} said {day}.",
        "The {R} said {day} that {C} would recall {N} {product} that [could|may] {risk}.",
        "{N} {product} made by {C} are being recalled because they [could|may] {risk}, the {R} [said|announced] {day}.",
        "{C} [said|announced] {day} that it was recalling {N} of its {product} after finding they [could|might] {risk}.",
        "Citing {hazard}, {C} began recalling {N} {product} {day}, according to the {R}.",
    ),
    None,
)


# --- share price moves


def shares_sample(world, rng, anchor):
    return {
        "company": _company(world, rng, anchor),
        "pct": rng.choice((float(rng.randint(2, 25)), _two_digits(rng.uniform(1.5, 19)))),
        "price": round(rng.uniform(4, 180), 2),
        "up": rng.random() < 0.55,
        "reason": rng.randrange(len(STOCK_REASONS)),
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def shares_slots(f):
    up = f["up"]
    return {
        "C": company_forms(f["company"]),
        "Cs": possessive(company_forms(f["company"])),
        "P": percent(f["pct"]),
        "price": price(f["price"]),
        "rose": by(
            up, ("rose", "climbed", "jumped", "gained"), ("fell", "dropped", "slid", "tumbled")
        ),
        "up": "up" if up else "down",
        "why": STOCK_REASONS[f["reason"]][0 if up else 1],
        "day": day(f["day"]),
    }


def shares_flip(f):
    return _with(f, up=not f["up"])  # the shares rose / fell


SHARES = Kind(
    "shares",
    shares_sample,
    shares_slots,
    (
        "Shares of {C} {rose} {P} to {price} in trading {day} after {why}.",
        "{Cs} stock [closed|ended] {up} {P} at {price} {day}, [after|in a move that followed news that] {why}.",
        "After {why}, shares of {C} {rose} {P} {day} to close at {price}.",
        "{C} shares [finished|ended the day] at {price} {day}, {up} {P}, after {why}.",
        "Investors sent {C} shares {up} {P} to {price} {day} after {why}.",
    ),
    shares_flip,
)


# --- verdicts


def verdict_sample(world, rng, anchor):
    return {
        "person": rng.choice(world.people),
        "company": _company(world, rng, anchor),
        "role": rng.choice(tuple(ROLES)),
        "charge": rng.choice(CHARGES),
        "town": anchor.get("town") or rng.choice(TOWNS),
        "guilty": rng.random() < 0.6,
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def verdict_slots(f):
    guilty = f["guilty"]
    return {
        "P": f["person"],
        "C": company_forms(f["company"]),
        "role": ROLES[f["role"]],
        "charge": f["charge"],
        "L": f["town"],
        "convicted": ("convicted",) if guilty else ("acquitted", "cleared"),
        "guilty": "guilty" if guilty else "not guilty",
        "day": day(f["day"]),
    }


def verdict_flip(f):
    return _with(f, guilty=not f["guilty"])  # convicted / acquitted


VERDICT = Kind(
    "verdict",
    verdict_sample,
    verdict_slots,
    (
        "A jury in {L} {day} {convicted} {P}, a former {role} of {C}, of {charge}.",
        "{P}, the former {role} of {C}, was {convicted} of {charge} by a jury in {L} {day}.",
        "A {L} jury found {P}, who was once {role} of {C}, {guilty} of {charge} {day}.",
        "Jurors in {L} {day} found former {C} {role} {P} {guilty} of {charge}.",
        "{P}, who used to be {role} of {C}, was found {guilty} of {charge} {day} after a trial in {L}.",
    ),
    verdict_flip,
)


# --- council votes


def council_sample(world, rng, anchor):
    members = rng.choice((7, 9, 11))
    yes = rng.randint(members // 2 + 1, members)
    return {
        "town": anchor.get("town") or rng.choice(TOWNS),
        "amount": nice(rng, 2, 900),
        "project": rng.choice(PROJECTS),
        "vote": (yes, members - yes),
        "approve": rng.random() < 0.65,
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def council_slots(f):
    yes, no = f["vote"]
    ok = f["approve"]
    return {
        "L": f["town"],
        "Ls": possessive((f["town"],)),
        "A": money(f["amount"]),
        "A_adj": money(f["amount"], adjective=True),
        "project": f["project"],
        "v": Number((f"{yes}-{no}", f"{yes} to {no}")),
        "v_dash": f"{yes}-{no}",
        "approve": "approve" if ok else "reject",
        "approved": "approved" if ok else "rejected",
        "day": day(f["day"]),
    }


def council_flip(f):
    return _with(f, approve=not f["approve"])  # a plan approved / rejected


COUNCIL = Kind(
    "council",
    council_sample,
    council_slots,
    (
        "The {L} city council voted {v} {day} to {approve} a {A_adj} plan to build {project}.",
        "A {A_adj} plan to build {project} was {approved} by the {L} city council {day} by a vote of {v}.",
        "By a {v_dash} vote {day}, the city council in {L} {approved} a plan to spend {A} on {project}.",
        "Members of the {L} city council voted {v} {day} to {approve} spending {A} on {project}.",
        "{Ls} city council has {approved} a {A_adj} plan for {project}, [officials said|according to city officials] {day}, after a {v_dash} vote.",
    ),
    council_flip,
)


# --- storms


def storm_sample(world, rng, anchor):
    return {
        "town": anchor.get("town") or rng.choice(TOWNS),
        "storm": rng.choice(STORMS),
        "n": nice(rng, 300, 250_000),
        "day": anchor.get("day") or rng.choice(WEEKDAYS),
    }


def storm_slots(f):
    return {
        "L": f["town"],
        "storm": f["storm"],
        "N": count(f["n"]),
        "day": day(f["day"]),
    }


STORM = Kind(
    "storm",
    storm_sample,
    storm_slots,
    (
        "{storm} left {N} homes in {L} without [power|electricity] {day}, [officials said|according to the local utility].",
        "Officials in {L} said {N} homes lost power {day} when {storm} [hit|swept through] the area.",
        "{N} homes in {L} were without power {day} after {storm} [hit|struck] the region, the [local utility|town's power company] said.",
        "Power was [cut|knocked out] to {N} homes in {L} {day} as {storm} [moved through|swept across] the area, [officials said|the utility said].",
    ),
    None,
)

KINDS = (RESULTS, TAKEOVER, JOBS, APPOINT, SUIT, RECALL, SHARES, VERDICT, COUNCIL, STORM)


# --------------------------------------------------------------------------------------------
# Rendering and pairing

_ALTERNATIVES = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")
_AN = re.compile(r"\b([Aa]) (\$?(?:8|11|18)(?![\d])|\$?8\d*)")  # said "eight", "eleven", "eighteen"
_AN_NAME = re.compile(r"\b([Aa]) ([AEIOU][a-z])")


def _pick(rng: random.Random, value: object, form: int) -> str:
    if isinstance(value, Number):
        return value[form % len(value)]
    return rng.choice(value) if isinstance(value, tuple) else str(value)


def render(template: str, slots: Slots, rng: random.Random, form: int = 0) -> str:
    """Fill a template: `[a|b]` picks one alternative, `{slot}` one of the slot's forms (a
    number's form is the `form`-th, so that both sentences of a pair write it alike)."""
    text = _ALTERNATIVES.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    text = _SLOT.sub(lambda m: _pick(rng, slots[m.group(1)], form), text)
    text = re.sub(r"\s+", " ", text).strip()
    text = _AN.sub(r"\1n \2", text)  # "a $8 million plan" -> "an $8 million plan"
    text = _AN_NAME.sub(r"\1n \2", text)  # "a Elmhollow jury" -> "an Elmhollow jury"
    first = next(i for i, ch in enumerate(text) if ch.isalnum())
    return text[:first] + text[first].upper() + text[first + 1 :]


def _fits(sentence: str) -> bool:
    return MIN_WORDS <= len(sentence.split()) <= MAX_WORDS


def _say(kind: Kind, facts: Facts, template: int, rng: random.Random, form: int) -> str | None:
    slots = kind.slots(facts)
    for _ in range(8):
        sentence = render(kind.templates[template], slots, rng, form)
        if _fits(sentence):
            return sentence
    return None


def make_pair(world: World, rng: random.Random, label: int) -> tuple[str, str] | None:
    """One pair of the given label, or None when this draw did not work out (draw again)."""
    kind = rng.choice(KINDS)
    facts = kind.sample(world, rng, {})
    kind2, facts2 = kind, facts
    change = "paraphrase"
    if label == 0:
        names = [n for n in NEGATIVE_CHANGES if n != "polarity" or kind.flip is not None]
        change = rng.choices(names, weights=[NEGATIVE_CHANGES[n] for n in names])[0]
        if change == "other":
            anchor: Facts = {"day": facts["day"]}
            if "company" in facts:  # a company in another line of business
                sector = facts["company"][1]
                anchor["company"] = rng.choice([c for c in world.companies if c[1] != sector])
            if "town" in facts:
                anchor["town"] = _other(rng, TOWNS, facts["town"])
            facts2 = kind.sample(world, rng, anchor)
            if facts2 is None:
                return None
        elif change == "event":
            anchor = {key: facts[key] for key in ("company", "town", "day") if key in facts}
            kind2 = rng.choice([k for k in KINDS if k is not kind])
            facts2 = kind2.sample(world, rng, anchor)
            if facts2 is None:
                return None
        else:
            facts2 = kind.flip(facts)
    first = rng.randrange(len(kind.templates))
    if kind2 is not kind:
        second = rng.randrange(len(kind2.templates))
    elif rng.random() < SAME_TEMPLATE[change]:
        second = first
    else:
        second = rng.choice([t for t in range(len(kind.templates)) if t != first])
    form = rng.randrange(12)  # how the pair writes its numbers: 12 suits lists of 1 to 4 forms
    # the word choices: the sentences of an "other" pair are worded alike, word for word
    wording = rng.getrandbits(32), rng.getrandbits(32)
    a = _say(kind, facts, first, random.Random(wording[0]), form)
    b = _say(kind2, facts2, second, random.Random(wording[change != "other"]), form)
    if a is None or b is None or a == b:
        return None
    return (a, b) if rng.random() < 0.5 else (b, a)


def build(seed: int = SEED, sizes: dict[str, int] = SIZES) -> dict[str, list[str]]:
    """The files' lines (header first), by split."""
    rng = random.Random(seed)
    world = make_world(rng)
    total = sum(sizes.values())
    ids = iter(rng.sample(range(100_000, 3_000_000), 2 * total))
    seen: set[tuple[str, str]] = set()
    files = {}
    for split, size in sizes.items():
        positives = round(size * POSITIVE_SHARE)
        labels = [1] * positives + [0] * (size - positives)
        rng.shuffle(labels)
        rows = []
        for label in labels:
            while True:
                pair = make_pair(world, rng, label)
                if pair is not None and pair not in seen and pair[::-1] not in seen:
                    break
            seen.add(pair)
            first = label if split != "test" else len(rows)
            rows.append(f"{first}\t{next(ids)}\t{next(ids)}\t{pair[0]}\t{pair[1]}")
        files[split] = [TEST_HEADER if split == "test" else HEADER, *rows]
    return files


def write(out: Path | str, seed: int = SEED) -> dict[str, Path]:
    """Write train.tsv, dev.tsv and test.tsv into `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, lines in build(seed).items():
        path = out / f"{split}.tsv"
        path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
        paths[split] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "mrpc-sample",
        help="folder to write train.tsv, dev.tsv, test.tsv into (default: examples/mrpc-sample)",
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help=f"another seed gives other data (default {SEED})"
    )
    args = parser.parse_args(argv)
    for split, path in write(args.out, args.seed).items():
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8-sig").splitlines()[1:]]
        words = [len(text.split()) for row in rows for text in row[3:]]
        line = f"{path}: {len(rows)} pairs, {sum(words) / len(words):.1f} words a sentence"
        if split != "test":
            share = sum(row[0] == "1" for row in rows) / len(rows)
            line += f", {share:.1%} paraphrases"
        print(line)


if __name__ == "__main__":
    main()
