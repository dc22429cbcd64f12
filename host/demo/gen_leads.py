#!/usr/bin/env python3
"""Deterministic generator for the leadgate demo data set (leads.jsonl).

Requires Python 3.9+ (stdlib) and the `phonenumbers` package from PyPI:

    pip install phonenumbers

Usage:

    python3 gen_leads.py            # writes leads.jsonl next to this script
    python3 gen_leads.py -o out.jsonl

Every output line is one JSON object:

    {"source": "scraper"|"webform", "truth": "p0042"|null,
     ["expect_error": {"field": ..., "rule": ...},] "lead": {...}}

`truth` is the real identity of the person behind the lead; `lead` is the body
POSTed to `POST /v1/leads` by the named source. Source default phone regions:
scraper = US, webform = GB.

Invariants (checked again, independently, by verify_leads.py):
  * each person has exactly one canonical email and one canonical valid phone;
    no two persons share either;
  * the first row of a person (in file order) carries the email; if it also
    carries the phone, later copies may be email-only, phone-only or both,
    otherwise later copies always carry the email (so that exact dedupe against
    *accepted* leads' fingerprints links every copy);
  * national-format phones only for the source's own region (US national only
    in scraper rows, GB national only in webform rows); IDD prefixes only for
    the source's region (011 for scraper, 00 for webform);
  * "+44 (0)..." only in webform rows; non-NANP numbers whose national number
    starts with "1" are never generated (some libphonenumber ports apply the
    default region's national prefix "1" to foreign numbers);
  * valid rows never contain an invalid contact value or a wrongly typed field;
  * invalid rows (truth null) carry `expect_error` and no contact that belongs to
    any person.
"""

import argparse
import json
import os
import random
import sys
import unicodedata
from collections import Counter, OrderedDict

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

SEED = 20240611
N_PERSONS = 600
# how many persons appear 1, 2, 3, 4 times (sum = 600 persons, 945 valid rows)
COPIES = {1: 365, 2: 150, 3: 60, 4: 25}
# invalid rows by rule (sum = 55 -> 1000 rows in total)
INVALID = {"missing_contact": 14, "invalid_email": 15, "invalid_phone": 12, "wrong_type": 14}

SOURCE_REGION = {"scraper": "US", "webform": "GB"}
SOURCE_IDD = {"scraper": "011", "webform": "00"}

# --------------------------------------------------------------------------
# name material
# --------------------------------------------------------------------------

FIRST_NAMES = """
James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel
Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy
Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan Stephen Larry Justin
Scott Brandon Benjamin Samuel Gregory Alexander Patrick Frank Raymond Jack Dennis Jerry
Tyler Aaron Nathan Henry Zachary Peter Kyle Ethan Noah Liam Oliver Harry Oscar Alfie
Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty
Margaret Sandra Ashley Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah
Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy Angela Shirley Anna Brenda Pamela Emma
Nicole Helen Samantha Katherine Christine Debra Rachel Carolyn Janet Catherine Maria Heather
Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren Christina Joan Evelyn Judith
Megan Andrea Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara Madison Frances Kathryn
Janice Jean Abigail Alice Julia Judy Sophia Grace Denise Amber Doris Marilyn Danielle
Beverly Isabella Theresa Diana Natalie Brittany Charlotte Marie Kayla Alexis Lori Amelia
Isla Ava Mia Poppy Freya Imogen Siobhan Niamh Aoife Saoirse Ciarán Seán Eoin Oisín Róisín
Siân Rhys Dylan Gethin Carys Eilidh Callum Hamish Ailsa
José Juan Luis Carlos Javier Miguel Alejandro Diego Pablo Sergio Andrés Álvaro Íñigo Ramón
Jesús Raúl Adrián Rubén María Lucía Sofía Carmen Isabel Ana Laura Elena Inés Begoña Pilar
Guadalupe Ximena Valentina Camila Mariana Fernanda Paula
João Gonçalo Tiago Rui Joana Beatriz Leonor Mariana Conceição
François Jean-Luc Pierre Louis Étienne Théo Mathéo Hugo Jérôme Benoît Cédric Gaëlle Hélène
Chloé Zoë Renée Agnès Élodie Camille Léa Manon Océane Amélie Margaux Noémie
Jürgen Jörg Björn Sören Günter Uwe Klaus Stefan Matthias Lukas Jonas Felix Maximilian Tobias
Katrin Jürgen Sabine Ursula Anja Birgit Heike Jana Lena Leonie Käthe Anneliese Dörte Maike
Søren Håkon Åsa Astrid Ingrid Sigrid Lars Nils Erik Magnus Linnéa Frida Maja Mikael Jussi
Aino Eero Pekka
Giovanni Giuseppe Marco Alessandro Luca Matteo Francesco Lorenzo Andrea Giulia Chiara Francesca
Federica Alessia Martina Niccolò
Łukasz Paweł Krzysztof Agnieszka Małgorzata Katarzyna Tomasz Wojciech Zofia Jiří Tomáš Petra
Zuzana Ondřej Dávid Zsófia Bence Réka
Dmitri Sergei Olga Natalia Svetlana Yuri Irina Aleksandr Anastasia
Priya Ananya Aarav Vihaan Arjun Rohan Rahul Sanjay Deepa Kavya Lakshmi Neha Aditya Vikram
Sunita Ravi Anil Meera Harpreet Gurpreet
Wei Li Na Jing Ming Xiaoming Yan Hui Jun Lei Fang Mei Hao Yu Zhen
Hiroshi Takeshi Yuki Haruto Sakura Aiko Kenji Yui Ren Daisuke
Min-jun Seo-yeon Ji-ho Ha-eun Jae-won Soo-jin
Minh Linh Anh Thanh Duc Huong
Mohammed Ahmed Omar Ali Youssef Fatima Aisha Layla Nour Khalid Hassan Yasmin Karim Rania
Zainab Ibrahim Tariq Samira
Chinedu Ngozi Oluwaseun Adaeze Emeka Chiamaka Kwame Ama Kofi Abena Tunde Folake Amara
Thabo Lerato Sipho
Mehmet Ayşe Emre Elif Can Zeynep Burak Selin Çağla
Yosef Noa Avi Tamar
Kalani Keanu Mateus Thiago Bruna Luana
""".split()

LAST_NAMES = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Wilson Anderson
Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker
Young Allen King Wright Scott Torres Hill Flores Green Adams Nelson Baker Hall Rivera Campbell
Mitchell Carter Roberts Phillips Evans Turner Parker Collins Edwards Stewart Morris Murphy
Cook Rogers Morgan Peterson Cooper Reed Bailey Bell Kelly Howard Ward Cox Richardson Wood
Watson Brooks Bennett Gray James Hughes Price Sanders Myers Long Ross Foster Powell Jenkins
Perry Russell Sullivan Fisher Henderson Coleman Simmons Patterson Jordan Reynolds Hamilton
Graham Wallace Cole West Hayes Gibson Ellis Marshall Owens Harrison Fernandez Shaw Holmes
Rice Hunt Black Palmer Mills Knight Lloyd Griffiths Davies Hughes Lewis Pritchard Llewellyn
Fraser Robertson Cameron Grant Sinclair Buchanan Kerr Munro Ferguson
O'Brien O'Connor O'Neill O'Sullivan O'Reilly McDonald McKenzie MacLeod McCarthy MacDougall
McLaughlin Byrne Ryan Walsh Doyle Fitzgerald Gallagher Quinn Kavanagh Ó_Súilleabháin
Hernández López González Pérez Sánchez Ramírez Gómez Díaz Álvarez Jiménez Ruiz Moreno Muñoz
Romero Navarro Domínguez Vázquez Ramos Castillo Ortega Delgado Peña Ibáñez Castaño Echeverría
Silva Santos Oliveira Souza Pereira Ferreira Almeida Gonçalves Carvalho Araújo Ribeiro Simões
Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer
Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hartmann Lange Vogel
Köhler Jäger Günther Böhm Weiß
Dubois Durand Lefèbvre Moreau Laurent Simon Michel Lefèvre Leroy Roux Fournier Girard Bonnet
Mercier Faure Chevalier Rousseau Gauthier Lemaître Hébert Béranger
Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti
De_Luca Costa Giordano Mancini Lombardi Fontana
Jensen Nielsen Hansen Pedersen Andersen Johansson Karlsson Nilsson Eriksson Larsson Öberg
Lindqvist Bergström Sjöberg Ødegård Virtanen Korhonen Mäkinen Nieminen Halvorsen
de_Vries van_Dijk Bakker Janssen Visser van_den_Berg Smit Mulder de_Jong
Kowalski Nowak Wiśniewski Wójcik Kowalczyk Lewandowski Zieliński Szymański Dąbrowski
Novák Dvořák Černý Horváth Nagy Kovács Szabó Tóth
Papadopoulos Georgiou Nikolaidis Yılmaz Kaya Demir Şahin Çelik Öztürk Aydın
Ivanov Petrov Smirnov Kuznetsova Popescu Ionescu Volkov
Okafor Adeyemi Okonkwo Mensah Owusu Abubakar Balogun Nwosu Boateng Mokoena Dlamini
Haddad Khalil Hassan Rahman Ahmed Ali Mansour Nasser Farouk Aziz
Cohen Levi Friedman Katz Mizrahi
Patel Sharma Singh Kumar Gupta Reddy Iyer Menon Chatterjee Banerjee Nair Kapoor Joshi Mehta
Desai Rao Verma Malhotra
Wang Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Lin Guo
Kim Park Choi Jung Kang Cho Yoon
Tanaka Suzuki Takahashi Watanabe Yamamoto Nakamura Kobayashi Sato Ito Kato
Nguyen Tran Le Pham Hoang Vu Dang Bui
Kealoha Mahoe
""".split()
# underscores stand for spaces inside multi-word surnames ("De Luca", "van Dijk")
LAST_NAMES = [n.replace("_", " ") for n in LAST_NAMES]
FIRST_NAMES = list(OrderedDict.fromkeys(FIRST_NAMES))
LAST_NAMES = list(OrderedDict.fromkeys(LAST_NAMES))

TRANSLIT = {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "ß": "ss",
            "đ": "d", "Đ": "D", "ı": "i", "œ": "oe", "Œ": "Oe", "þ": "th", "ð": "d"}


def ascii_fold(s):
    s = "".join(TRANSLIT.get(c, c) for c in s)
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c))


def slug(s):
    return "".join(c for c in ascii_fold(s).lower() if c.isalnum())


# --------------------------------------------------------------------------
# companies, cities, mail providers
# --------------------------------------------------------------------------

# (base name, legal suffix, domain, country); domain None -> derived from the name
COMPANIES = [
    ("Acme", "Inc.", "acme-corp.com", "US"),
    ("Northwind Traders", "Inc.", None, "US"),
    ("Bluefin Analytics", "LLC", None, "US"),
    ("Harbor & Pine", "LLC", "harborandpine.com", "US"),
    ("Cedar Ridge Software", "Inc.", "cedarridge.io", "US"),
    ("Summit Peak Logistics", "Corp.", "summitpeak.com", "US"),
    ("Lakeshore Dental Group", "PLLC", "lakeshoredental.com", "US"),
    ("Ironclad Security", "Inc.", "ironcladsec.com", "US"),
    ("Redwood Capital Partners", "LLC", "redwoodcap.com", "US"),
    ("Brightline Media", "Inc.", "brightlinemedia.com", "US"),
    ("Granite State Roofing", "Inc.", "granitestateroofing.com", "US"),
    ("Copperleaf Health", "Inc.", "copperleafhealth.com", "US"),
    ("Silver Birch Consulting", "LLC", "silverbirch.co", "US"),
    ("Meridian Freight", "Inc.", "meridianfreight.com", "US"),
    ("Blue Heron Realty", "LLC", "blueheronrealty.com", "US"),
    ("Quantum Leap Robotics", "Inc.", "qlrobotics.ai", "US"),
    ("Prairie Wind Energy", "Corp.", "prairiewind.energy", "US"),
    ("Golden Gate Bakeries", "Inc.", "ggbakeries.com", "US"),
    ("Stonebridge Insurance", "Co.", "stonebridge-ins.com", "US"),
    ("Evergreen Pediatrics", "P.C.", "evergreenpeds.com", "US"),
    ("Tidewater Marine Supply", "Inc.", "tidewatermarine.com", "US"),
    ("Pixel Forge Studios", "LLC", "pixelforge.studio", "US"),
    ("Hudson Valley Orchards", "LLC", "hvorchards.com", "US"),
    ("Lone Star Fabrication", "Inc.", "lonestarfab.com", "US"),
    ("Cobalt Cloud Systems", "Inc.", "cobaltcloud.io", "US"),
    ("Maple & Main Legal", "LLP", "maplemainlegal.com", "US"),
    ("Windward Aviation", "Inc.", "windwardaviation.com", "US"),
    ("Sierra Outdoor Gear", "Inc.", "sierraoutdoor.com", "US"),
    ("Thames Valley Lettings", "Ltd", "tvlettings.co.uk", "GB"),
    ("Pennine Engineering", "Ltd", "pennine-eng.co.uk", "GB"),
    ("Albion Coffee Roasters", "Ltd", "albioncoffee.co.uk", "GB"),
    ("Kestrel Data", "Ltd", "kestreldata.co.uk", "GB"),
    ("Whitcombe & Hale", "LLP", "whitcombehale.co.uk", "GB"),
    ("Bramble Lane Interiors", "Ltd", "bramblelane.co.uk", "GB"),
    ("Northern Lights Digital", "Ltd", "northernlights.digital", "GB"),
    ("Camden Print Works", "Ltd", "camdenprint.co.uk", "GB"),
    ("Highland Spring Water", "Ltd", "highlandspringwater.co.uk", "GB"),
    ("Severn Bridge Accountants", "LLP", "severnbridge.co.uk", "GB"),
    ("Oakhurst Care Homes", "Ltd", "oakhurstcare.co.uk", "GB"),
    ("Wessex Solar", "Ltd", "wessexsolar.co.uk", "GB"),
    ("Brunel Software", "PLC", "brunelsoftware.com", "GB"),
    ("Fenwick Recruitment", "Ltd", "fenwickrecruitment.co.uk", "GB"),
    ("Clydeside Shipping", "Ltd", "clydesideshipping.co.uk", "GB"),
    ("Cotswold Stone Supplies", "Ltd", "cotswoldstone.co.uk", "GB"),
    ("Greenwich Financial", "Limited", "greenwichfinancial.co.uk", "GB"),
    ("Kingfisher Veterinary", "Ltd", "kingfishervets.co.uk", "GB"),
    ("Lambeth Bike Co", "Ltd", "lambethbike.co.uk", "GB"),
    ("Mersey Logistics", "Ltd", "merseylogistics.co.uk", "GB"),
    ("Oxford Biolabs", "Ltd", "oxfordbiolabs.com", "GB"),
    ("Shoreditch Design Studio", "Ltd", "shoreditchdesign.studio", "GB"),
    ("Hartley & Sons Builders", "Ltd", "hartleyandsons.co.uk", "GB"),
    ("Rheinland Anlagenbau", "GmbH", "rheinland-anlagenbau.de", "DE"),
    ("Nordlicht Software", "GmbH", "nordlicht-software.de", "DE"),
    ("Bergmann Logistik", "AG", "bergmann-logistik.de", "DE"),
    ("Spreewald Feinkost", "GmbH", "spreewald-feinkost.de", "DE"),
    ("Atelier Lumière", "SARL", "atelier-lumiere.fr", "FR"),
    ("Bordeaux Vins Export", "SAS", "bordeauxvins.fr", "FR"),
    ("Provence Tech", "SAS", "provencetech.fr", "FR"),
    ("Southern Cross Mining", "Pty Ltd", "southerncrossmining.com.au", "AU"),
    ("Bondi Surf Co", "Pty Ltd", "bondisurf.com.au", "AU"),
    ("Kookaburra Analytics", "Pty Ltd", "kookaburra.io", "AU"),
    ("Iberia Renovables", "S.L.", "iberiarenovables.es", "ES"),
    ("Tulip Fintech", "B.V.", "tulipfintech.nl", "NL"),
    ("Grachten Design", "B.V.", "grachtendesign.nl", "NL"),
]

# internationalised (IDN) company domains, all NFC, no characters whose IDNA2003
# and IDNA2008/UTS46 mappings differ (no ß, ς, ZWJ...)
IDN_COMPANIES = [
    ("Müller Maschinenbau", "GmbH", "müller.de", "DE"),
    ("Bücherstube am Markt", "GmbH", "bücher.example", "DE"),
    ("Café Mélange", "SARL", "café.fr", "FR"),
    ("Köln Logistik", "GmbH", "köln-logistik.de", "DE"),
    ("Crêperie Bretonne", "SAS", "crêperie-bretonne.fr", "FR"),
    ("Señor Tapas", "S.L.", "señor-tapas.es", "ES"),
    ("Zoë Design Studio", "Ltd", "zoëdesign.co.uk", "GB"),
    ("Bäckerei Schön", "GmbH", "bäckerei-schön.de", "DE"),
    ("Søndergaard Consulting", "Inc.", "søndergaard.com", "US"),
]

FREEMAIL = {
    "US": ["gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "hotmail.com",
           "icloud.com", "aol.com", "proton.me"],
    "GB": ["gmail.com", "gmail.com", "hotmail.co.uk", "yahoo.co.uk", "btinternet.com",
           "outlook.com", "icloud.com", "sky.com"],
    "DE": ["gmx.de", "web.de", "t-online.de", "gmail.com"],
    "FR": ["orange.fr", "free.fr", "laposte.net", "gmail.com"],
    "AU": ["bigpond.com", "gmail.com", "outlook.com"],
    "ES": ["gmail.com", "hotmail.es", "telefonica.net"],
    "NL": ["ziggo.nl", "kpnmail.nl", "gmail.com"],
}

CITIES = {
    "US": ["New York", "San Francisco", "Chicago", "Boston", "Seattle", "Austin", "Denver",
           "Atlanta", "Miami", "Houston", "Dallas", "Phoenix", "Portland", "San Diego",
           "Las Vegas", "Nashville", "Raleigh", "Charlotte", "Minneapolis", "Detroit",
           "Philadelphia", "Los Angeles", "Salt Lake City", "St. Louis", "Pittsburgh"],
    "GB": ["London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Edinburgh", "Bristol",
           "Liverpool", "Cardiff", "Belfast", "Newcastle upon Tyne", "Oxford", "Cambridge",
           "Brighton", "Nottingham", "Sheffield", "Reading", "York"],
    "DE": ["Berlin", "München", "Hamburg", "Köln", "Frankfurt am Main", "Düsseldorf", "Stuttgart"],
    "FR": ["Paris", "Lyon", "Marseille", "Bordeaux", "Toulouse", "Nantes", "Lille"],
    "AU": ["Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide"],
    "ES": ["Madrid", "Barcelona", "Valencia", "Sevilla", "Bilbao"],
    "NL": ["Amsterdam", "Rotterdam", "Utrecht", "Den Haag", "Eindhoven"],
}

COUNTRY_RENDER = {
    "US": ["US", "USA", "United States", "united states", "U.S.", "us", "United States of America"],
    "GB": ["GB", "UK", "United Kingdom", "united kingdom", "England", "Great Britain", "U.K."],
    "DE": ["DE", "Germany", "Deutschland", "GERMANY"],
    "FR": ["FR", "France", "france"],
    "AU": ["AU", "Australia", "AUS"],
    "ES": ["ES", "Spain", "España"],
    "NL": ["NL", "Netherlands", "The Netherlands", "Nederland"],
}

TITLES = [
    "CEO", "Founder", "Co-Founder", "CTO", "CFO", "COO", "VP of Sales", "VP Marketing",
    "Head of Operations", "Head of Growth", "Marketing Manager", "Sales Director",
    "Account Executive", "Business Development Manager", "Office Manager", "Operations Manager",
    "Software Engineer", "Senior Software Engineer", "Engineering Manager", "Product Manager",
    "Procurement Lead", "Purchasing Manager", "HR Director", "Recruiter", "Managing Director",
    "Director of IT", "IT Manager", "Data Analyst", "Customer Success Manager", "Partner",
    "Owner", "General Manager", "Finance Manager", "Practice Manager", "Store Manager",
    "Chief Revenue Officer", "Project Manager", "Consultant", "Architect", "Geschäftsführer",
    "Directeur Commercial", "Gerente General",
]

# --------------------------------------------------------------------------
# phone numbers
# --------------------------------------------------------------------------

US_AREA_CODES = [
    201, 202, 203, 205, 206, 207, 208, 210, 212, 213, 214, 215, 216, 217, 224, 225, 248, 253,
    262, 267, 281, 301, 302, 303, 304, 305, 310, 312, 313, 314, 315, 317, 318, 319, 323, 330,
    336, 337, 347, 352, 360, 402, 404, 405, 407, 408, 410, 412, 414, 415, 417, 424, 425, 432,
    469, 480, 502, 503, 504, 505, 512, 513, 515, 516, 517, 518, 520, 530, 540, 541, 559, 561,
    562, 571, 585, 601, 602, 603, 607, 608, 610, 612, 614, 615, 617, 619, 623, 626, 628, 630,
    646, 650, 651, 657, 661, 678, 682, 702, 703, 704, 706, 707, 708, 713, 714, 716, 717, 718,
    720, 727, 732, 734, 737, 740, 754, 757, 760, 763, 770, 773, 774, 775, 781, 786, 801, 802,
    803, 804, 805, 808, 813, 816, 817, 818, 832, 843, 847, 856, 857, 858, 860, 862, 865, 901,
    904, 907, 908, 909, 910, 913, 914, 916, 917, 918, 919, 925, 929, 940, 941, 949, 952, 954,
    970, 971, 972, 973, 978, 980,
]

PHONE_COUNTRY_WEIGHTS = [("US", 45), ("GB", 38), ("DE", 5), ("FR", 4), ("AU", 4), ("ES", 2), ("NL", 2)]


def digits(rng, n):
    return "".join(str(rng.randrange(10)) for _ in range(n))


def gen_phone_candidate(rng, cc):
    """Return (e164 candidate, acceptable number types) for a country."""
    if cc == "US":
        area = rng.choice(US_AREA_CODES)
        while True:
            exch = rng.randrange(200, 1000)
            if exch != 555 and exch % 100 != 11:
                break
        return "+1%d%03d%s" % (area, exch, digits(rng, 4)), None
    if cc == "GB":
        r = rng.random()
        if r < 0.62:  # mobiles 074xx-079xx, never 07700 (drama range) and never 076 (pagers)
            while True:
                body = rng.choice("4579") + digits(rng, 8)
                if not body.startswith("700"):
                    break
            return "+447" + body, (PhoneNumberType.MOBILE,)
        # London 020 3xxx/7xxx/8xxx, avoiding the 020 7946 0xxx drama range altogether
        while True:
            body = rng.choice("378") + digits(rng, 7)
            if not body.startswith("7946"):
                break
        return "+4420" + body, (PhoneNumberType.FIXED_LINE,)
    if cc == "DE":  # geographic only; DE mobiles (15x/16x/17x) start with "1"
        area = rng.choice(["30", "40", "89", "69", "221", "211", "711"])
        sub_len = {2: 8, 3: 7}[len(area)]
        return "+49" + area + rng.choice("23456789") + digits(rng, sub_len - 1), (PhoneNumberType.FIXED_LINE,)
    if cc == "FR":  # mobiles 06/07 and Lyon/Marseille 04 (no Paris 01: starts with "1")
        lead = rng.choice(["6", "6", "7", "4"])
        return "+33" + lead + rng.choice("12345678") + digits(rng, 7), None
    if cc == "AU":  # mobiles 04xx (not 0491 570 drama range) and Sydney/Melbourne landlines
        if rng.random() < 0.6:
            body = "4" + rng.choice("01235678") + digits(rng, 7)  # no 049x at all
            return "+61" + body, (PhoneNumberType.MOBILE,)
        area = rng.choice(["2", "3"])
        return "+61" + area + rng.choice(["8", "9", "4"]) + digits(rng, 7), (PhoneNumberType.FIXED_LINE,)
    if cc == "ES":
        if rng.random() < 0.6:
            return "+346" + digits(rng, 8), (PhoneNumberType.MOBILE,)
        return "+3491" + rng.choice("3456") + digits(rng, 6), (PhoneNumberType.FIXED_LINE,)
    if cc == "NL":
        if rng.random() < 0.6:
            return "+316" + rng.choice("12345") + digits(rng, 7), (PhoneNumberType.MOBILE,)
        return "+3120" + rng.choice("3456") + digits(rng, 6), (PhoneNumberType.FIXED_LINE,)
    raise ValueError(cc)


def gen_phone(rng, cc, used):
    while True:
        cand, types = gen_phone_candidate(rng, cc)
        if cand in used:
            continue
        num = phonenumbers.parse(cand, None)
        if not phonenumbers.is_valid_number(num):
            continue
        if phonenumbers.region_code_for_number(num) != cc:
            continue
        if types and phonenumbers.number_type(num) not in types:
            continue
        e164 = phonenumbers.format_number(num, PhoneNumberFormat.E164)
        assert e164 == cand
        nsn = phonenumbers.national_significant_number(num)
        if cc != "US" and nsn.startswith(("0", "1")):
            continue
        used.add(cand)
        return cand


def phone_renderings(e164, source):
    """All renderings of `e164` that are allowed for a lead from `source`.

    Returns (national_variants, international_variants)."""
    num = phonenumbers.parse(e164, None)
    cc = num.country_code
    region = phonenumbers.region_code_for_number(num)
    nsn = phonenumbers.national_significant_number(num)
    intl = phonenumbers.format_number(num, PhoneNumberFormat.INTERNATIONAL)  # "+44 20 7123 4567"
    rest = intl[len("+%d " % cc):]  # "20 7123 4567"
    idd = SOURCE_IDD[source]
    inter = [
        intl,
        e164,
        intl.replace(" ", "-"),
        "+%d %s" % (cc, rest.replace(" ", "")),
        "%s %d %s" % (idd, cc, rest),
        "%s%d%s" % (idd, cc, nsn),
    ]
    if idd == "00":
        inter.append("00%d-%s" % (cc, rest.replace(" ", "-")))
    else:
        inter.append("011-%d-%s" % (cc, rest.replace(" ", "-")))
    if cc == 1 and source == "scraper":
        # nobody in the US dials 011-1-...: keep only "+1" forms (and national forms below)
        inter = [x for x in inter if not x.startswith(idd)]
    national = []
    if cc == 1:
        a, b, c = nsn[:3], nsn[3:6], nsn[6:]
        inter += ["+1 (%s) %s-%s" % (a, b, c), "+1-%s-%s-%s" % (a, b, c), "+1.%s.%s.%s" % (a, b, c)]
        if source == "webform":
            inter += ["001-%s-%s-%s" % (a, b, c), "001 %s %s %s" % (a, b, c)]
    if region == "GB" and source == "webform":
        inter += ["+44 (0)" + rest, "+44 (0) " + rest, "+44(0)" + rest.replace(" ", "")]
    if region == SOURCE_REGION[source]:
        if region == "US":
            a, b, c = nsn[:3], nsn[3:6], nsn[6:]
            national = [
                "(%s) %s-%s" % (a, b, c), "(%s) %s-%s" % (a, b, c), "(%s)%s-%s" % (a, b, c),
                "%s.%s.%s" % (a, b, c), "%s%s%s" % (a, b, c), "%s-%s-%s" % (a, b, c),
                "%s %s %s" % (a, b, c), "1-%s-%s-%s" % (a, b, c), "1 (%s) %s-%s" % (a, b, c),
                "1%s%s%s" % (a, b, c), "%s/%s-%s" % (a, b, c),
            ]
        elif region == "GB":
            nat = phonenumbers.format_number(num, PhoneNumberFormat.NATIONAL)  # "020 7123 4567" / "07911 123456"
            national = [nat, nat, "0" + nsn, nat.replace(" ", "-")]
            if nsn.startswith("20"):
                national += ["(020) %s %s" % (nsn[2:6], nsn[6:]), "020-%s-%s" % (nsn[2:6], nsn[6:]),
                             "0%s %s" % (nsn[:6], nsn[6:])]
            else:
                national += ["0%s %s %s" % (nsn[:4], nsn[4:7], nsn[7:]), "(0%s) %s" % (nsn[:4], nsn[4:])]
    return national, inter


def check_phone(rendering, source, e164):
    num = phonenumbers.parse(rendering, SOURCE_REGION[source])
    got = phonenumbers.format_number(num, PhoneNumberFormat.E164)
    assert phonenumbers.is_valid_number(num) and got == e164, (rendering, source, got, e164)


def render_phone(rng, e164, source):
    national, inter = phone_renderings(e164, source)
    if national and rng.random() < 0.65:
        r = rng.choice(national)
    else:
        r = rng.choice(inter)
    if rng.random() < 0.1:
        r = rng.choice([" ", "  ", "\t"]) + r + rng.choice(["", " "])
    check_phone(r, source, e164)
    return r


# --------------------------------------------------------------------------
# persons
# --------------------------------------------------------------------------


def idna_domain(domain_unicode):
    return domain_unicode.encode("idna").decode("ascii")


class Person:
    pass


def make_persons(rng):
    used_emails, used_phones = set(), set()
    persons = []
    countries, weights = zip(*PHONE_COUNTRY_WEIGHTS)
    n_idn = round(N_PERSONS * 0.05)
    idn_slots = set(rng.sample(range(N_PERSONS), n_idn))
    for i in range(N_PERSONS):
        p = Person()
        p.id = "p%04d" % (i + 1)
        p.first = rng.choice(FIRST_NAMES)
        p.last = rng.choice(LAST_NAMES)
        p.idn = i in idn_slots
        if p.idn:
            comp = rng.choice(IDN_COMPANIES)
            p.country = comp[3]
        else:
            p.country = rng.choices(countries, weights)[0]
            comp = None
            if rng.random() < 0.72:
                local = [c for c in COMPANIES if c[3] == p.country]
                if rng.random() < 0.15 or not local:
                    local = COMPANIES
                comp = rng.choice(local)
        if comp:
            base, suffix, dom, ccomp = comp
            p.company = (base, suffix)
            p.domain_u = dom or (slug(base) + ".com")
            pattern = rng.choices(["first.last", "flast", "first", "first_last", "firstl", "f.last"],
                                  [45, 20, 12, 8, 8, 7])[0]
        else:
            p.company = None
            p.domain_u = rng.choice(FREEMAIL[p.country])
            pattern = rng.choices(["first.last", "flast", "firstlast", "first.lastNN", "last.first",
                                   "firstNNNN"], [30, 15, 15, 20, 10, 10])[0]
        p.domain_a = idna_domain(p.domain_u)
        f, l = slug(p.first), slug(p.last)
        base_local = {
            "first.last": f + "." + l, "flast": f[0] + l, "first": f, "first_last": f + "_" + l,
            "firstl": f + l[0], "f.last": f[0] + "." + l, "firstlast": f + l,
            "first.lastNN": "%s.%s%02d" % (f, l, rng.randrange(100)), "last.first": l + "." + f,
            "firstNNNN": "%s%d" % (f, rng.randrange(1960, 2006)),
        }[pattern]
        local, k = base_local, 1
        while local + "@" + p.domain_a in used_emails:
            k += 1
            local = "%s%d" % (base_local, k)
        p.local = local
        p.email_canon = local + "@" + p.domain_a  # normalized form (ASCII domain)
        used_emails.add(p.email_canon)
        p.phone = gen_phone(rng, p.country, used_phones)
        p.title = rng.choice(TITLES) if (p.company or rng.random() < 0.3) else None
        p.city = rng.choice(CITIES[p.country])
        persons.append(p)
    return persons, used_emails, used_phones


# --------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------


def ws_wrap(rng, s, p=0.3):
    if rng.random() < p:
        s = rng.choice(["", " ", "  ", "\t", " \t"]) + s + rng.choice(["", " ", "  ", "\t", " \n"])
    return s


def noisy_email(rng, p):
    domain = p.domain_u
    if p.idn and rng.random() < 0.5:
        domain = p.domain_a
    local = p.local
    r = rng.random()
    if r < 0.42:
        e = local + "@" + domain
    elif r < 0.62:  # "John.Smith@Gmail.COM"
        loc = ".".join(x[:1].upper() + x[1:] for x in local.split("."))
        labels = domain.split(".")
        labels = [labels[0][:1].upper() + labels[0][1:]] + [x.upper() for x in labels[1:]]
        e = loc + "@" + ".".join(labels)
    elif r < 0.74:
        e = (local + "@" + domain).upper()
    elif r < 0.86:
        e = local + "@" + domain.upper()
    else:
        e = "".join(c.upper() if rng.random() < 0.3 else c for c in local) + "@" + domain
    return ws_wrap(rng, e, 0.35)


def noisy_token(rng, s):
    r = rng.random()
    if r < 0.5:
        out = s
    elif r < 0.65:
        out = s.lower()
    elif r < 0.78:
        out = s.upper()
    elif r < 0.88:
        out = s[:1].lower() + s[1:].upper()  # "jOHN"
    elif r < 0.94:
        out = ascii_fold(s)  # accents lost by the scraper
    else:
        out = s.swapcase()
    return out


def noisy_names(rng, p, lead):
    first, last = noisy_token(rng, p.first), noisy_token(rng, p.last)
    r = rng.random()
    if r < 0.25:
        sep = rng.choice([" ", " ", "  ", "   ", " \t"])
        lead["name"] = ws_wrap(rng, first + sep + last, 0.3)
    elif r < 0.3:  # first name only
        lead["first_name"] = ws_wrap(rng, first, 0.3)
        if rng.random() < 0.6:
            lead["last_name"] = rng.choice([None, ""])
    else:
        lead["first_name"] = ws_wrap(rng, first, 0.25)
        lead["last_name"] = ws_wrap(rng, last, 0.25)


def noisy_company(rng, p):
    if not p.company:
        return rng.choice([None, "", None, "Self-employed", "Freelance", "n/a"]) if rng.random() < 0.4 else "__omit__"
    base, suffix = p.company
    r = rng.random()
    bare = suffix.rstrip(".")
    if r < 0.35:
        return base + " " + suffix
    if r < 0.45:
        return (base + " " + suffix).upper()
    if r < 0.55:
        return base.upper() + " " + suffix.lower()
    if r < 0.65:
        return " %s, %s " % (base, bare)
    if r < 0.75:
        return (base + ", " + suffix).lower()
    if r < 0.88:
        return base
    if r < 0.94:
        return base + "  " + bare + "  "
    return ""


def noisy_website(rng, p):
    dom = p.domain_u
    if p.idn and rng.random() < 0.5:
        dom = p.domain_a
    return rng.choice(["https://www.%s", "http://%s", "%s", "www.%s/", "https://%s/", "https://www.%s/contact",
                       "HTTPS://WWW.%s"]) % dom


def noisy_text(rng, s):
    r = rng.random()
    if r < 0.7:
        out = s
    elif r < 0.82:
        out = s.lower()
    elif r < 0.9:
        out = s.upper()
    else:
        out = ascii_fold(s)
    return ws_wrap(rng, out, 0.15)


def maybe(rng, lead, key, value_fn, p_present, p_null=0.3):
    """Set an optional field: present (value), explicit null/"" or omitted."""
    if rng.random() < p_present:
        v = value_fn()
        if v != "__omit__":
            lead[key] = v
    elif rng.random() < p_null:
        lead[key] = rng.choice([None, None, ""])


def external_ref(rng, source, rowno):
    if source == "scraper":
        return rng.choice(["scr-%06d-%04x" % (rowno, rng.randrange(65536)),
                           "li:%s" % "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10)),
                           "crawl/%d/%d" % (rng.randrange(2023, 2026), rowno)])
    return rng.choice(["wf-%d%02d%02d-%04d" % (rng.randrange(2023, 2026), rng.randrange(1, 13), rng.randrange(1, 29), rowno),
                       "typeform:%08x" % rng.randrange(1 << 32), "contact-us#%d" % (1000 + rowno)])


def build_lead(rng, p, source, with_email, with_phone, rowno):
    lead = OrderedDict()
    noisy_names(rng, p, lead)
    if with_email:
        lead["email"] = noisy_email(rng, p)
    elif rng.random() < 0.3:
        lead["email"] = None
    if with_phone:
        lead["phone"] = render_phone(rng, p.phone, source)
    elif rng.random() < 0.3:
        lead["phone"] = None
    maybe(rng, lead, "company", lambda: noisy_company(rng, p), 0.8)
    if p.title:
        maybe(rng, lead, "title", lambda: noisy_text(rng, p.title), 0.7)
    if p.company:
        maybe(rng, lead, "website", lambda: noisy_website(rng, p), 0.45)
    maybe(rng, lead, "city", lambda: noisy_text(rng, p.city), 0.6)
    maybe(rng, lead, "country", lambda: ws_wrap(rng, rng.choice(COUNTRY_RENDER[p.country]), 0.1), 0.55)
    maybe(rng, lead, "external_ref", lambda: external_ref(rng, source, rowno), 0.8, 0.2)
    return lead


# --------------------------------------------------------------------------
# invalid rows
# --------------------------------------------------------------------------

# only unambiguous syntax errors: no "@", empty local part, empty domain, more than one "@"
BAD_EMAILS = ["{f}@", "{f}.{l}.example.com", "{f}@@{d}", "@{d}", "{f}.{l}@", "{f}@{d}@", "{f}.{l}(at){d}",
              "mailto:", "{f}.{l}@{d}; {l}@{d}", "{f}.{l}#{d}", "{f}@@"]
BAD_PHONES = {
    "scraper": ["12345", "+1 555 0100", "555-0100", "(000) 000-0000", "123-456-7890", "call me", "+44 12",
                "0", "+1 212", "911"],
    "webform": ["12345", "+1 555 0100", "07700 900123", "0000 000000", "+44 12", "01234", "tel", "020 12"],
}


def invalid_row(rng, rule, rowno, used_emails, used_phones):
    source = rng.choice(["scraper", "webform"])
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    lead = OrderedDict()
    if rng.random() < 0.3:
        lead["name"] = ws_wrap(rng, noisy_token(rng, first) + " " + noisy_token(rng, last), 0.3)
    else:
        lead["first_name"] = noisy_token(rng, first)
        lead["last_name"] = noisy_token(rng, last)
    f, l = slug(first), slug(last)
    comp = rng.choice(COMPANIES)
    d = comp[2] or slug(comp[0]) + ".com"

    def fresh_email():
        while True:
            e = "%s.%s.%d@%s" % (f, l, rng.randrange(100, 1000), d)
            if e not in used_emails:
                used_emails.add(e)
                return e

    def fresh_us_phone():
        return gen_phone(rng, "US", used_phones)  # reserved so no person can get it

    field = None
    if rule == "missing_contact":
        field = "email"  # the contact is what is missing; email is the primary one
        for k in ("email", "phone"):
            if rng.random() < 0.35:
                lead[k] = None
    elif rule == "invalid_email":
        field = "email"
        tpl = rng.choice(BAD_EMAILS)
        lead["email"] = tpl.format(f=f, l=l, d=d, dn=d.split(".")[0])
        if rng.random() < 0.4:
            lead["phone"] = None
    elif rule == "invalid_phone":
        field = "phone"
        lead["phone"] = rng.choice(BAD_PHONES[source])
        if rng.random() < 0.4:
            lead["email"] = None
    elif rule == "wrong_type":
        kind = rng.choice(["phone_number", "phone_number", "email_list", "email_list",
                           "first_name_object", "phone_list"])
        if kind == "phone_number":
            field = "phone"
            e164 = fresh_us_phone()
            lead["phone"] = int(e164[2:]) if source == "scraper" else int(e164[1:])
        elif kind == "email_list":
            field = "email"
            lead["email"] = [fresh_email()]
        elif kind == "phone_list":
            field = "phone"
            lead["phone"] = ["+" + fresh_us_phone()[1:]]
        else:
            field = "first_name"
            lead.pop("name", None)
            lead["first_name"] = {"x": 1}
            lead["last_name"] = noisy_token(rng, last)
            lead["email"] = fresh_email()
    if rng.random() < 0.5:
        lead["company"] = comp[0] + " " + comp[1]
    if rng.random() < 0.4:
        lead["city"] = rng.choice(CITIES[comp[3]])
    if rng.random() < 0.6:
        lead["external_ref"] = external_ref(rng, source, rowno)
    return OrderedDict([("source", source), ("truth", None),
                        ("expect_error", OrderedDict([("field", field), ("rule", rule)])), ("lead", lead)])


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def pick_source(rng, p):
    p_scraper = {"US": 0.72, "GB": 0.38}.get(p.country, 0.5)
    return "scraper" if rng.random() < p_scraper else "webform"


def generate():
    rng = random.Random(SEED)
    persons, used_emails, used_phones = make_persons(rng)

    counts = [k for k, n in COPIES.items() for _ in range(n)]
    assert len(counts) == N_PERSONS
    rng.shuffle(counts)
    slots = []
    for p, c in zip(persons, counts):
        p.copies = c
        slots += [p] * c
    rng.shuffle(slots)

    rows = []
    first_has_phone = {}
    for p in slots:
        source = pick_source(rng, p)
        if p.id not in first_has_phone:
            with_email, with_phone = True, rng.random() < 0.8
            first_has_phone[p.id] = with_phone
        elif first_has_phone[p.id]:
            with_email, with_phone = rng.choices([(True, True), (True, False), (False, True)], [45, 25, 30])[0]
        else:
            with_email, with_phone = rng.choices([(True, True), (True, False)], [50, 50])[0]
        rows.append((p, source, with_email, with_phone))

    invalid_rules = [r for r, n in INVALID.items() for _ in range(n)]
    rng.shuffle(invalid_rules)
    total = len(rows) + len(invalid_rules)
    invalid_pos = set(rng.sample(range(total), len(invalid_rules)))

    out, it_valid, it_invalid = [], iter(rows), iter(invalid_rules)
    for rowno in range(total):
        if rowno in invalid_pos:
            out.append(invalid_row(rng, next(it_invalid), rowno, used_emails, used_phones))
        else:
            p, source, we, wp = next(it_valid)
            lead = build_lead(rng, p, source, we, wp, rowno)
            out.append(OrderedDict([("source", source), ("truth", p.id), ("lead", lead)]))
    return persons, out


def summary(persons, out):
    valid = [r for r in out if r["truth"] is not None]
    invalid = [r for r in out if r["truth"] is None]
    truths = Counter(r["truth"] for r in valid)
    lines = [
        "rows:              %d" % len(out),
        "persons:           %d" % len(truths),
        "valid rows:        %d" % len(valid),
        "duplicates:        %d  (valid rows - persons)" % (len(valid) - len(truths)),
        "persons by copies: %s" % dict(sorted(Counter(truths.values()).items())),
        "invalid rows:      %d  %s" % (len(invalid), dict(sorted(Counter(r["expect_error"]["rule"] for r in invalid).items()))),
        "rows per source:   %s" % dict(sorted(Counter(r["source"] for r in out).items())),
        "valid per source:  %s" % dict(sorted(Counter(r["source"] for r in valid).items())),
        "phone countries:   %s" % dict(Counter(p.country for p in persons).most_common()),
        "IDN-domain persons: %d" % sum(p.idn for p in persons),
        "expected CRM contacts: %d" % len(truths),
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "leads.jsonl"))
    args = ap.parse_args()
    persons, out = generate()
    with open(args.output, "w", encoding="utf-8", newline="\n") as fh:
        for r in out:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print("wrote %s" % args.output)
    print(summary(persons, out))


if __name__ == "__main__":
    sys.exit(main())
