"""A labelled corpus for measuring PII removal, and its scoring.

Positives are sentences an agent's user or tool might send, each with planted values whose
kind and span are known: 150 values of every kind, in the formats people write
them, about a quarter inside tool-call arguments (JSON). Negatives hold look-alikes that
must come out unchanged: 16-digit numbers failing Luhn, IBANs with wrong check digits,
SSNs in the invalid ranges, dates, times, prices, counts, zip codes, order numbers,
versions, UUIDs and hashes (ids, not secrets), identifiers, paths and URLs.

Generated from a seed rather than stored, so it is the same everywhere and reads as code.
Every value is made up: phone numbers are valid in libphonenumber's numbering plans (a
real number is), card numbers and IBANs have correct check digits, SSNs are in the
issued ranges, keys have their vendor's shape and random bodies.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
from collections import Counter
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from stdnum import iban as stdnum_iban
from stdnum import luhn, verhoeff
from stdnum.es import dni

from interns.trace_collector.redact import (
    CARD,
    EMAIL,
    IBAN,
    IP,
    KINDS,
    NATIONAL_ID,
    PHONE,
    SECRET,
    Finding,
    Redactor,
)

SEED = 20190301
VALUES_PER_KIND = 150


@dataclass(frozen=True)
class Planted:
    """A value planted in a sample's text, at text[start:end]."""

    kind: str
    value: str
    start: int
    end: int


@dataclass(frozen=True)
class Sample:
    """A text with planted values; `tool_arguments` when the text is a tool call's
    arguments (a JSON document)."""

    text: str
    planted: tuple[Planted, ...]
    tool_arguments: bool = False


# --- values -----------------------------------------------------------------------------

_FIRST = [
    "ana",
    "bob",
    "chen",
    "dana",
    "elif",
    "farid",
    "grace",
    "hugo",
    "ines",
    "jamal",
    "kofi",
    "lena",
    "mateo",
    "nadia",
    "omar",
    "priya",
    "quinn",
    "rosa",
    "sven",
    "yuki",
]
_LAST = [
    "smith",
    "garcia",
    "okafor",
    "nguyen",
    "muller",
    "rossi",
    "kowalski",
    "tanaka",
    "silva",
    "ahmed",
    "johansson",
    "obrien",
    "dubois",
    "kim",
    "patel",
    "novak",
]
_DOMAINS = [
    "example.com",
    "mail.example.org",
    "acme-corp.io",
    "uni-hamburg.de",
    "gmail.com",
    "outlook.com",
    "company.co.uk",
    "startup.ai",
    "posteo.net",
    "travel-agency.com.au",
]
_US_AREAS = [
    "201",
    "212",
    "213",
    "305",
    "312",
    "408",
    "415",
    "510",
    "617",
    "646",
    "650",
    "702",
    "713",
    "718",
    "805",
    "818",
    "917",
    "925",
    "949",
    "972",
]
_PHONE_REGIONS = [
    "GB",
    "DE",
    "FR",
    "IN",
    "AU",
    "JP",
    "BR",
    "ES",
    "IT",
    "NL",
    "MX",
    "SG",
    "ZA",
    "KE",
    "CH",
    "SE",
    "IE",
    "CA",
]
_CARD_PREFIXES = [
    ("4", 16),
    ("51", 16),
    ("55", 16),
    ("2221", 16),
    ("2720", 16),
    ("34", 15),
    ("37", 15),
    ("6011", 16),
    ("65", 16),
    ("3530", 16),
    ("36", 14),
    ("62", 16),
    ("62", 19),
    ("4", 19),
]
# Country, BBAN layout: n digits, a capitals, c either.
_IBAN_LAYOUTS = {
    "DE": "18n",
    "GB": "4a14n",
    "NL": "4a10n",
    "AT": "16n",
    "CH": "5n12c",
    "PL": "24n",
    "SE": "20n",
    "IE": "4a14n",
    "DK": "14n",
    "NO": "11n",
    "FI": "14n",
    "LU": "3n13c",
}
_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def _chars(rng: random.Random, alphabet: str, count: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


def _email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first}_{last}{rng.randint(1, 99)}",
            f"{first[0]}{last}",
            f"{first}+{rng.choice(['news', 'travel', 'work'])}",
            f"{first.capitalize()}.{last.capitalize()}",
            f"{last}{rng.randint(1970, 2005)}",
        ]
    )
    return f"{local}@{rng.choice(_DOMAINS)}"


def _us_phone(rng: random.Random) -> str:
    while True:
        area = rng.choice(_US_AREAS)
        exchange = str(rng.randint(2, 9)) + _digits(rng, 2)
        line = _digits(rng, 4)
        if exchange[1:] == "11" or exchange == "555":
            continue
        if phonenumbers.is_valid_number(phonenumbers.parse(area + exchange + line, "US")):
            break
    return rng.choice(
        [
            f"{area}-{exchange}-{line}",
            f"({area}) {exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"{area} {exchange} {line}",
            f"+1 {area} {exchange} {line}",
            f"+1-{area}-{exchange}-{line}",
            f"1-{area}-{exchange}-{line}",
            f"{area}{exchange}{line}",
            f"+1{area}{exchange}{line}",
            f"({area}){exchange}-{line}",
            f"+1 ({area}) {exchange}-{line}",
        ]
    )


def _international_phone(rng: random.Random) -> str:
    while True:
        region = rng.choice(_PHONE_REGIONS)
        kind = rng.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
        example = phonenumbers.example_number_for_type(region, kind)
        national = str(example.national_number)
        # Keep the prefix that makes the example valid; vary the subscriber digits.
        varied = national[:-4] + _digits(rng, 4)
        number = phonenumbers.parse(f"+{example.country_code}{varied}")
        if phonenumbers.is_valid_number(number):
            break
    written = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    return rng.choice(
        [
            written,
            written,
            phonenumbers.format_number(number, PhoneNumberFormat.E164),
            "00" + written[1:],
        ]
    )


def _phone(rng: random.Random) -> str:
    return _us_phone(rng) if rng.random() < 0.5 else _international_phone(rng)


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice(_CARD_PREFIXES)
    body = prefix + _digits(rng, length - len(prefix) - 1)
    number = body + luhn.calc_check_digit(body)
    style = rng.choice(["plain", "spaces", "dashes"])
    if style == "plain":
        return number
    separator = " " if style == "spaces" else "-"
    if length == 15 or length == 14:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, length, 4)]
    return separator.join(groups)


def _bban(rng: random.Random, layout: str) -> str:
    parts = []
    count = ""
    for char in layout:
        if char.isdigit():
            count += char
            continue
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.ascii_uppercase + string.digits,
        }[char]
        parts.append(_chars(rng, alphabet, int(count)))
        count = ""
    return "".join(parts)


def _iban(rng: random.Random) -> str:
    while True:
        country = rng.choice(sorted(_IBAN_LAYOUTS))
        bban = _bban(rng, _IBAN_LAYOUTS[country])
        check = stdnum_iban.calc_check_digits(f"{country}00{bban}")
        number = f"{country}{check}{bban}"
        if stdnum_iban.is_valid(number):
            break
    if rng.random() < 0.6:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def _ssn(rng: random.Random) -> tuple[str, str, str]:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}", f"{rng.randint(1, 99):02d}", f"{rng.randint(1, 9999):04d}"


def _national_id(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.6:
        area, group, serial = _ssn(rng)
        separator = rng.choice(["-", "-", " "])
        return separator.join((area, group, serial))
    if choice < 0.73:
        digits = str(rng.randint(2, 9)) + _digits(rng, 10)
        number = digits + verhoeff.calc_check_digit(digits)
        return " ".join(number[i : i + 4] for i in range(0, 12, 4))
    if choice < 0.86:
        digits = _digits(rng, 8)
        return digits + dni.calc_check_digit(digits)
    letters = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
    while letters in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
        letters = rng.choice(_NINO_FIRST) + rng.choice(_NINO_SECOND)
    digits = _digits(rng, 6)
    suffix = rng.choice("ABCD")
    if rng.random() < 0.5:
        return f"{letters} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{letters}{digits}{suffix}"


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        first = rng.choice([10, 172, 192, 203, 81, 151, 23, 104, 8, 45])
        return ".".join(
            str(part)
            for part in (first, rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
        )
    groups = [rng.randint(0, 0xFFFF) for _ in range(8)]
    if rng.random() < 0.5:
        groups[0] = rng.choice([0x2001, 0x2A02, 0x2600, 0xFE80])
        for index in rng.sample(range(2, 7), 2):
            groups[index] = 0
    address = ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups))
    return address.exploded if rng.random() < 0.3 else address.compressed


_BASE62 = string.ascii_letters + string.digits
_URLSAFE = _BASE62 + "-_"


def _jwt(rng: random.Random) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    header = part({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
    payload = part({"sub": _digits(rng, 10), "name": rng.choice(_FIRST), "iat": 1516239022})
    return f"{header}.{payload}.{_chars(rng, _URLSAFE, 43)}"


def _private_key(rng: random.Random) -> str:
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = "\n".join(_chars(rng, _BASE62 + "+/", 64) for _ in range(rng.randint(3, 6)))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def _secret(rng: random.Random) -> str:
    maker = rng.choice(
        [
            lambda: "sk-" + _chars(rng, _BASE62, 48),
            lambda: "sk-proj-" + _chars(rng, _URLSAFE, 64),
            lambda: "ghp_" + _chars(rng, _BASE62, 36),
            lambda: "gho_" + _chars(rng, _BASE62, 36),
            lambda: "github_pat_" + _chars(rng, _BASE62, 22) + "_" + _chars(rng, _BASE62, 59),
            lambda: (
                f"xox{rng.choice('abpr')}-{_digits(rng, 11)}-{_digits(rng, 12)}-"
                + _chars(rng, _BASE62, 24)
            ),
            lambda: "AKIA" + _chars(rng, string.ascii_uppercase + string.digits, 16),
            lambda: "AIza" + _chars(rng, _URLSAFE, 35),
            lambda: rng.choice(["sk_live_", "rk_live_"]) + _chars(rng, _BASE62, 24),
            lambda: _jwt(rng),
            lambda: "ik_" + _chars(rng, _URLSAFE, 43),
            lambda: _private_key(rng),
            # High-entropy strings with no known prefix: an AWS secret key, random base64.
            lambda: _chars(rng, _BASE62 + "+/", 40),
            lambda: _chars(rng, _BASE62, rng.randint(24, 64)),
        ]
    )
    return maker()


_MAKERS = {
    EMAIL: _email,
    PHONE: _phone,
    CARD: _card,
    IBAN: _iban,
    NATIONAL_ID: _national_id,
    IP: _ip,
    SECRET: _secret,
}


# --- sentences --------------------------------------------------------------------------

_TEMPLATES = {
    EMAIL: [
        "Please send the invoice to {} by Friday.",
        "You can reach me at {} if anything changes.",
        "My email is {}",
        "Contact: <{}>",
        "cc {}, thanks!",
        "The booking confirmation went to {}; can you resend it?",
        "Reply-To: {}\nSubject: refund",
        "mailto:{}",
    ],
    PHONE: [
        "Call me at {} after 5pm.",
        "My number is {}.",
        "The restaurant's phone number is {}",
        "Phone: {}",
        "Please text {} when the driver arrives.",
        "You can reach the front desk on {} (24h).",
        "tel:{}",
        "Is {} still the best number to reach you?",
    ],
    CARD: [
        "My card number is {}, expiry 08/27.",
        "Charge it to {} please.",
        "Card: {} CVV 123",
        "I paid with {} yesterday but was charged twice.",
        "Use the Visa ending... actually here is the full number: {}",
        "card_number={}",
    ],
    IBAN: [
        "Wire the deposit to {} please.",
        "My IBAN is {}.",
        "Bank account: {} (Sparkasse)",
        "Refund to IBAN {}, account holder on file.",
        "iban: {}",
    ],
    NATIONAL_ID: [
        "My social security number is {}.",
        "SSN: {}",
        "Here is my ID number {} for the rental form.",
        "Tax id {} — please keep it private.",
        "National insurance / ID: {}",
    ],
    IP: [
        "The server at {} is not responding.",
        "Requests from {} were blocked by the firewall.",
        "ssh admin@ host {} port 22 times out",
        "Client IP: {}",
        "Whitelist {} for the VPN, please.",
        "GET /api/orders 500 from {} at 11:30",
    ],
    SECRET: [
        "Use the key {} for the staging environment.",
        "export API_TOKEN={}",
        "Here's my token: {}",
        "It fails with {} as the credential.",
        "config:\n  key: {}\n  region: eu-west-1",
        "{}",
    ],
}

_ARGUMENT_KEYS = {
    EMAIL: ["email", "recipient", "contact_email"],
    PHONE: ["phone_number", "phone", "contact"],
    CARD: ["card_number", "payment_card"],
    IBAN: ["iban", "account"],
    NATIONAL_ID: ["ssn", "national_id", "tax_id"],
    IP: ["host", "client_ip", "address"],
    SECRET: ["credential", "value", "header"],
}


def _sentence_sample(rng: random.Random, kind: str, value: str) -> Sample:
    template = rng.choice(_TEMPLATES[kind])
    prefix, suffix = template.split("{}")
    text = prefix + value + suffix
    return Sample(text, (Planted(kind, value, len(prefix), len(prefix) + len(value)),))


def _arguments_sample(rng: random.Random, kind: str, value: str) -> Sample:
    key = rng.choice(_ARGUMENT_KEYS[kind])
    inline = rng.random() < 0.4
    shown = f"Customer says: reach out via {value} today" if inline else value
    arguments = {
        "request_id": "r-" + _digits(rng, 6),
        key: shown,
        "date": "2019-03-01",
        "number_of_seats": str(rng.randint(1, 6)),
    }
    text = json.dumps(arguments)
    escaped = json.dumps(value)[1:-1]
    start = text.index(escaped)
    return Sample(text, (Planted(kind, escaped, start, start + len(escaped)),), True)


def _mixed_sample(rng: random.Random, values: list[tuple[str, str]]) -> Sample:
    """Several values of different kinds in one message."""
    connectors = [" Also, ", " and ", "; ", "\n", " — ", ", plus "]
    text = "Hi, my details: "
    planted = []
    for index, (kind, value) in enumerate(values):
        if index:
            text += rng.choice(connectors)
        start = len(text)
        text += value
        planted.append(Planted(kind, value, start, len(text)))
    return Sample(text + ". Thanks!", tuple(planted))


def positives(seed: int = SEED, per_kind: int = VALUES_PER_KIND) -> list[Sample]:
    """Samples with `per_kind` planted values of every kind: about a quarter in tool-call
    arguments, a tenth of the rest several kinds to a message, the others one to a
    sentence."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    pending: list[tuple[str, str]] = []
    for kind in KINDS:
        for _ in range(per_kind):
            value = _MAKERS[kind](rng)
            draw = rng.random()
            if draw < 0.25:
                samples.append(_arguments_sample(rng, kind, value))
            elif draw < 0.35:
                pending.append((kind, value))
            else:
                samples.append(_sentence_sample(rng, kind, value))
    rng.shuffle(pending)
    for start in range(0, len(pending), 3):
        samples.append(_mixed_sample(rng, pending[start : start + 3]))
    return samples


def negatives() -> list[str]:
    """Texts with look-alikes and nothing to redact."""
    texts = [
        # 16-digit numbers failing Luhn, in a card's context.
        "My card number is 4111 1111 1111 1112, expiry 08/27.",
        "Charge 5500-0000-0000-0005 please.",
        "card 4012888888881882",
        "Reference 1234567812345678 on the statement.",
        # IBANs with wrong check digits.
        "My IBAN is DE88 3704 0044 0532 0130 00.",
        "Wire it to GB83WEST12345698765432.",
        "Account NL92ABNA0417164300 for the refund.",
        # SSNs in the ranges never issued.
        "SSN: 000-12-3456",
        "SSN 666-45-6789",
        "social security number 912-34-5678",
        "ssn: 123-00-4567",
        "SSN 123-45-0000",
        # Dates and times.
        "Book it for 2019-03-01 at 11:30.",
        "The reservation is on 2019-03-04 11:30:00 for 2 people.",
        "Check-in 03/01/2019, check-out 03/05/2019.",
        "Departure 01.03.2019 at 7:45 pm, returning 2019-03-12",
        "Timestamp 2019-03-01T11:30:45Z",
        "We arrive March 1st 2019 around 11:30 am.",
        # Prices, counts, zip codes, order and confirmation numbers, rooms, flights.
        "The total is $1,299.99 and the balance is 19663.10.",
        "It costs EUR 45.00 per night, 1,234,567 points in total.",
        "A table for 12 people, 3 rooms, 2 baths.",
        "Ship it to zip code 95014 (or 94103-1234).",
        "Order #4082478880 has shipped, tracking 1Z999AA10123456784.",
        "Your order number is 10293847 and confirmation code XJ4K9P.",
        "Flight UA 1234 leaves from gate 22; seat 14C.",
        "Room 1204, floor 12, building 4.",
        "It's at 1016-1098 North Center Court, apartment 1435.",
        "ISBN 978-3-16-148410-0 is out of print.",
        "The population was 8,336,817 in 2019.",
        "Coordinates 37.7749, -122.4194.",
        # Numbers that look like phone numbers but are none.
        "Use 123-456-7890 as a placeholder in the form.",
        "Dial 000-000-0000 to test.",
        "The sequence 1-2-3-4-5-6-7 is easy.",
        # Versions, ids, hashes (ids are kept: see redact.py).
        "Python 3.11.4 and version 2.2.366 are installed.",
        "Trace 123e4567-e89b-12d3-a456-426614174000 failed.",
        "Session 9f86d081884c7d659a2feaa0c55ad015 expired.",
        "Commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it.",
        "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        # Identifiers, words, paths, URLs.
        "Call Restaurants_2_ReserveRestaurant with the new date.",
        "The function getUserAccountSettingsForTenant returns None.",
        "MyVeryLongVariableName2024Final is a bad name.",
        "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.",
        "See /usr/local/lib/python3.11/site-packages/interns/__init__.py",
        "Docs at https://www.example.com/Docs/Guides/GettingStarted2024/index.html",
        "The image is at https://cdn.example.com/images/2019/03/01/Header_Banner_v2.png",
        "internationalization-2024-Q3-report.pdf is attached.",
        # Secret words without a secret.
        "I forgot my password, can you reset it?",
        "The secret is out: we love this place.",
        "Set max_tokens=1024 and temperature 0.2.",
        "The bearer of this letter is my friend.",
        "Basic information about the hotel, please.",
        "The API is down again.",
        "Token limits are 4096 per call.",
        # C++ scopes, times, MAC-like labels are not IPv6.
        "std::vector<int> and Foo::Bar are C++.",
        "Meet at 11:30:00 or 12:45.",
        "Versions 1.2.3 and 10.0.1 differ.",
        # SGD-style tool arguments.
        '{"date": "2019-03-01", "location": "San Jose", "number_of_seats": "2", '
        '"restaurant_name": "Sino", "time": "11:30"}',
        '{"account_balance": "19663.10", "account_type": "checking", "amount": "1250"}',
        '{"destination_airport_name": "JFK International Airport", '
        '"outbound_departure_time": "06:10", "price": 253}',
    ]
    return texts


# --- scoring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """How a redactor did on the corpus: per kind, planted values and those removed (the
    whole span covered by redactions) and those removed under their own kind; the
    negatives with any redaction."""

    planted: Counter[str]
    removed: Counter[str]
    removed_as_kind: Counter[str]
    missed: list[tuple[str, str, str]]
    false_positives: list[tuple[str, list[str]]]

    def recall(self, kind: str | None = None) -> float:
        if kind is None:
            return sum(self.removed.values()) / max(1, sum(self.planted.values()))
        return self.removed[kind] / max(1, self.planted[kind])


def _covered(planted: Planted, findings: list[Finding]) -> tuple[bool, bool]:
    """Whether `findings` cover all of `planted`, and whether one of its kind covers part."""
    position = planted.start
    same_kind = False
    for finding in findings:
        if finding.end <= planted.start or finding.start >= planted.end:
            continue
        same_kind |= finding.kind == planted.kind
        if finding.start <= position:
            position = max(position, finding.end)
    return position >= planted.end, same_kind


def score(redactor: Redactor, samples: list[Sample], negative_texts: list[str]) -> Score:
    """Scores `redactor` on the corpus. A value in tool-call arguments counts as removed
    only if the redacted arguments are still valid JSON and no longer hold it."""
    planted: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    removed_as_kind: Counter[str] = Counter()
    missed = []
    for sample in samples:
        findings = redactor.find(sample.text)
        redacted = None
        if sample.tool_arguments:
            redacted, _ = redactor.redact_json(sample.text, "corpus")
            json.loads(redacted)
        for value in sample.planted:
            planted[value.kind] += 1
            covered, same_kind = _covered(value, findings)
            if redacted is not None and value.value in redacted:
                covered = False
            if covered:
                removed[value.kind] += 1
                removed_as_kind[value.kind] += same_kind
            else:
                missed.append((value.kind, value.value, sample.text))
    false_positives = []
    for text in negative_texts:
        findings = redactor.find(text)
        if findings:
            false_positives.append((text, [text[f.start : f.end] for f in findings]))
    return Score(planted, removed, removed_as_kind, missed, false_positives)
