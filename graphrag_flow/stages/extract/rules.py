"""Offline extraction: typed entities and relationships from one text unit, by deterministic rules.

This module owns the `provider: offline` answer to the graph-extraction step: the same
`GraphExtraction` an LLM returns, made from rules so that the default provider runs with
nothing downloaded and indexes millions of tokens in seconds. A statistical tagger would not
fit: spaCy's small model (not on PyPI either) needs ~20 minutes for the PEP corpus alone, and
keyphrase tools return untyped phrases (see stack-notes "Offline extraction").

The rules target what technical prose and reST/PEP documents carry:

- a field header at the top of a document (``PEP:``, ``Title:``, ``Author:`` with names and
  emails, ``Requires:``, ``Python-Version:`` ...): the PEP, its authors and delegates (PERSON),
  the PEPs it requires/replaces, the Python version it targets;
- references: ``PEP 484`` / ``:pep:`484``` (PEP), ``RFC 2822`` (DOCUMENT);
- code: ``literal`` and `interpreted` text and reST roles (``:mod:``, ``:class:``, ``:func:``,
  ``:term:`` ...), typed MODULE / CLASS / FUNCTION / CODE / CONCEPT from the role or the
  identifier's shape and a fixed list of standard-library modules;
- capitalised multi-word names (PERSON, ORGANIZATION, GEO), filtered against sentence-initial
  capitals, section headings, dates and words the same unit also uses in lower case;
- CamelCase identifiers (CLASS), known software and languages (SOFTWARE), acronyms (CONCEPT);
- technical noun phrases ending in a known head noun ("static type checker", "global
  interpreter lock"), with stop-lists for determiners, verbs and vague adjectives (CONCEPT).

Relationships join entities mentioned in the same sentence (or the header); strength is the
number of sentences of the unit in which the pair co-occurs, the description is the first such
sentence. Everything is a pure function of the text: no randomness, no network, no set
iteration order, so the same text gives an identical answer, order included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphrag_flow.llm.schemas import ExtractedEntity, ExtractedRelationship, GraphExtraction

MAX_DESCRIPTION = 300
#: relationships are made between the first N distinct entities of a sentence: a long
#: enumeration would otherwise add N² edges that say nothing.
MAX_ENTITIES_PER_SENTENCE = 8
#: sentences (and run-on lines) are cut into windows of this size before matching.
MAX_SENTENCE_CHARS = 2000
MAX_HEADER_LINES = 60

ENTITY_TYPES = (
    "PERSON", "ORGANIZATION", "GEO", "PEP", "DOCUMENT", "MODULE", "CLASS", "FUNCTION", "CODE",
    "SOFTWARE", "CONCEPT",
)  # fmt: skip

# --------------------------------------------------------------------------- word lists


def _word_list(text: str) -> list[str]:
    """A whitespace-separated word list, in order (long lists read better as a text block)."""
    return text.split()


def _words(text: str) -> frozenset[str]:
    return frozenset(_word_list(text))


#: Python's standard library (public top-level names of 3.11 plus modules removed since 2.x
#: that PEPs discuss), fixed here rather than read from `sys` so answers do not depend on the
#: interpreter version.
STDLIB_MODULES = _words("""
__future__ __main__ abc aifc argparse array ast asynchat asyncio asyncore atexit audioop base64 bdb
binascii binhex bisect builtins bz2 cProfile calendar cgi cgitb chunk cmath cmd code codecs codeop
collections colorsys compileall concurrent configparser contextlib contextvars copy copyreg crypt
csv ctypes curses dataclasses datetime dbm decimal difflib dis distutils doctest dummy_threading
email encodings ensurepip enum errno faulthandler fcntl filecmp fileinput fnmatch formatter
fractions ftplib functools gc genericpath getopt getpass gettext glob graphlib grp gzip hashlib
heapq hmac html http imaplib imghdr imp importlib inspect io ipaddress itertools json keyword
lib2to3 linecache locale logging lzma macpath mailbox mailcap marshal math mimetypes mmap
modulefinder msilib msvcrt multiprocessing netrc nis nntplib nt ntpath numbers opcode operator
optparse os ossaudiodev parser pathlib pdb pickle pickletools pipes pkgutil platform plistlib poplib
posix posixpath pprint profile pstats pty pwd py_compile pyclbr pydoc pydoc_data pyexpat queue
quopri random re readline reprlib resource rlcompleter runpy sched secrets select selectors shelve
shlex shutil signal site smtpd smtplib sndhdr socket socketserver spwd sqlite3 ssl stat statistics
string stringprep struct subprocess sunau symbol symtable sys sysconfig syslog tabnanny tarfile
telnetlib tempfile termios textwrap threading time timeit tkinter token tokenize tomllib trace
traceback tracemalloc tty turtle turtledemo types typing unicodedata unittest urllib uu uuid venv
warnings wave weakref webbrowser winreg winsound wsgiref xdrlib xml xmlrpc zipapp zipfile zipimport
zlib zoneinfo
""")
THIRD_PARTY_MODULES = _words("""
numpy scipy pandas dask mypy attrs pytest setuptools pip six requests typing_extensions twisted
django flask torch tensorflow pydantic docutils sphinx wheel cython numba pkg_resources packaging
virtualenv tox nose hypothesis jinja2 sqlalchemy matplotlib pyarrow cffi greenlet gevent trio
""")
KNOWN_MODULES = STDLIB_MODULES | THIRD_PARTY_MODULES
#: dotted names that are modules themselves (``os.path``), not attributes of one.
SUBMODULES = _words("""
os.path collections.abc concurrent.futures importlib.metadata importlib.resources importlib.abc
importlib.util importlib.machinery xml.etree xml.etree.ElementTree xml.dom email.mime email.message
urllib.request urllib.parse urllib.error logging.handlers logging.config unittest.mock
asyncio.events asyncio.tasks asyncio.futures multiprocessing.shared_memory http.client http.server
json.decoder encodings.idna ctypes.util distutils.core test.support
""")
#: module names distinctive enough to count as the module when they stand bare in prose.
PROSE_MODULES = _words("""
asyncio functools itertools contextlib dataclasses importlib tkinter unittest doctest
multiprocessing subprocess ctypes pathlib urllib distutils setuptools hashlib datetime zipfile
tarfile sqlite3 xmlrpc tokenize typing_extensions pydoc lib2to3 venv ensurepip zipimport pkgutil
asyncore asynchat contextvars tracemalloc sysconfig configparser argparse optparse weakref
unicodedata zoneinfo tomllib graphlib statistics ipaddress numpy scipy mypy pytest cffi
""")
#: software, languages and platforms recognised in prose, canonical spelling. Capitalised ones
#: must match case exactly ("Windows", not "windows"); lowercase ones match any case.
SOFTWARE = {
    w.lower(): w
    for w in _word_list("""
Python CPython PyPy Jython IronPython MicroPython Cython Stackless Pyston Cinder HPy mypy pytype
Pyre pyright PyCharm Django Flask NumPy SciPy pandas PyTorch TensorFlow Jupyter IPython Sphinx
docutils setuptools pip virtualenv conda PyPI GitHub GitLab Git Mercurial Subversion Linux Windows
macOS Unix FreeBSD Java JavaScript TypeScript Perl Ruby Haskell Lisp Rust Emacs LLVM GCC Clang
Zope Twisted Tornado OpenMP Numba Dask Kotlin Scala Swift Fortran Tcl Tk Bitbucket Roundup
Discourse Mailman Buildbot Docker Azure Cloudflare Fastly SourceForge NetHack StarCraft
""")
}
#: organisations known by one word (multi-word ones are found by ORG_WORDS).
KNOWN_ORGS = {
    w.lower(): w
    for w in _word_list("""
DeepMind Microsoft Google Meta Facebook Apple Amazon Intel IBM Bloomberg Dropbox Quansight Anaconda
Enthought Mozilla Oracle Netflix Instagram ActiveState NVIDIA OpenAI Canonical Zope PSF
""")
}
#: typing special forms, recognised capitalised in prose without backticks (not at sentence start).
TYPING_NAMES = _words("""
Union Optional Callable Generic Protocol TypedDict Literal ClassVar Annotated Awaitable Coroutine
Iterable Iterator Sequence Mapping NamedTuple NoReturn Never TypeGuard TypeIs Unpack Concatenate
ParamSpec TypeVar TypeVarTuple TypeAlias Self LiteralString AnyStr Hashable Sized
""")
#: keywords in ``literals`` name a construct: ``with`` -> "with statement".
SALIENT_KEYWORDS = {
    **{k: f"{k} statement" for k in ("with", "assert", "del", "raise", "global", "nonlocal", "match", "try")},
    **{k: f"{k} expression" for k in ("await", "yield", "lambda")},
    "async": "async keyword",
    "except": "except clause",
    "finally": "finally clause",
}
#: builtins worth a node; int/str/list/... are left out (they are in every typing sentence).
BUILTIN_CLASSES = _words("""
frozenset bytearray memoryview classmethod staticmethod property super range slice complex
NotImplemented Ellipsis
""")
BUILTIN_FUNCTIONS = _words("""
isinstance issubclass getattr setattr hasattr delattr iter next len repr hash id callable
sorted reversed enumerate zip map filter vars dir globals locals eval exec compile open print input
breakpoint aiter anext
""")
#: dunders that are attributes (CODE); other dunders are special methods (FUNCTION).
DUNDER_ATTRIBUTES = _words("""
__annotations__ __all__ __name__ __dict__ __slots__ __doc__ __module__ __qualname__ __mro__
__type_params__ __value__ __bound__ __constraints__ __match_args__ __orig_bases__ __file__
__version__ __author__ __path__ __class__ __debug__ __spec__ __loader__ __package__ __weakref__
__code__ __defaults__ __kwdefaults__ __globals__ __closure__ __wrapped__ __self__ __func__
__infer_variance__ __builtins__ __cached__ __parameters__ __args__ __origin__ __total__
__required_keys__ __optional_keys__ __supertype__ __traceback__ __cause__ __context__
""")
LITERAL_STOP = _words("""
self cls none true false def class return import from for if else elif while try pass not and or
is in as int str bool float bytes list dict set tuple type args kwargs foo bar baz qux spam eggs ham
obj func value name x y z a b c n i t f s k v fn cb arg var val key keys items update get data
result results stuff thing example mymodule mypackage
""")
#: capitalised words that start sentences or headings, never names by themselves.
STOP_CAPS = _words("""
The This That These Those A An If In On At It Its For As When While With Without But And Or Not No
Yes To Of By From All Any Some Each Every Both Such Since Because However Also Thus Then There Here
We You They He She I Our Your Their His Her What Which Who Whom Whose Why How Where See Note Other
Many Most More One Two Three First Second Third After Before Although Instead Otherwise Unlike Like
Using Use Given Even So Only Just Once Currently Finally Further Furthermore Similarly Likewise
Therefore Hence Specifically Previously Now New Let Consider Example Examples Is Are Do Does Can
Should Would Could May Might Must Will Shall Was Were Be Been Has Have Had Did Thanks Thank Dear
Hi Hello Until Unless Whether Either Neither Per Via Into Onto Upon Over Under About Above Below
Between Among During Through Within Along Across Around Against Toward Towards Except Besides
Beyond Despite Rather Meanwhile Later Earlier Today Yesterday Tomorrow Again Always Never Often
Sometimes Usually Perhaps Maybe Indeed Still Yet Already Especially Particularly Generally
Abstract Rationale Motivation Specification Copyright References Footnotes Acknowledgements
Acknowledgments Appendix Background Summary Overview Introduction Conclusion Proposal
Implementation Reference Discussion Discussions Status Title Created Resolution Version Type
Author Authors Open Issues Rejected Ideas Alternatives Changes Deferred Withdrawn Accepted Final
Draft Active Superseded Informational Process Standards Track Notes Warning Important Tip Todo
TODO Update UPDATE Edit Also Yes No OK Okay Well Ok True False None Mr Mrs Ms Dr Prof Sir St
""")
DATE_WORDS = _words("""
January February March April May June July August September October November December Jan Feb Mar
Apr Jun Jul Aug Sep Sept Oct Nov Dec Monday Tuesday Wednesday Thursday Friday Saturday Sunday Mon
Tue Wed Thu Fri Sat Sun
""")
ORG_WORDS = _words("""
Foundation Society Inc Corporation Corp Council Steering University Institute Company Labs
Association Consortium Committee Congress Parliament Senate Court Church Army Navy Party Nations
Bank Agency Department Office Bureau Board Club Academy Federation Microsoft Google Meta Facebook
Apple Amazon Intel IBM Bloomberg Microsoft Dropbox Quansight Anaconda Enthought Mozilla Oracle Sun Netflix
Instagram ActiveState Ltd LLC GmbH Alliance Initiative Conference PyCon EuroPython Commission
League Assembly
""")
_ROLE_WORDS = _words("Director Directors Staff Fellow Fellows Member Members Chair President Summer")
PLACE_WORDS = _words("""
Cemetery City County River Mountain Mountains Ocean Sea Lake Island Islands Valley Street Square
Park Hall Bay Kingdom Republic States Province Station Bridge Avenue Road Harbor Harbour
""")
#: title-case words that make a phrase a technical concept rather than a name.
TECH_CAPS = _words("""
Python Type Types Function Functions Class Classes Module Modules Protocol Error Exception Syntax
Pattern Patterns Statement Statements Expression Expressions Release Manager Language Library
Standard Guide Style Code String Strings Object Objects Method Methods Interface Generic Generics
Data Format Unicode Documentation Docstring Docstrings Variable Variables Annotations Annotation
Hints Hint Checker Checkers Enhancement Proposals Index Operator Operators Dict Dictionary Versions
Schedule Lifecycle Support Bugfix Mapping Matching Structural Await Async Coroutine Coroutines
Generator Generators Loop Event Parameter Parameters Argument Arguments Keyword Keywords Scope
Assignment Assignments Comprehension Comprehensions Iterator Iterators Alias Aliases Grammar Parser
Compiler Interpreter Runtime Tools Tool API ABI Thread Threads Threading Lock Memory Garbage
Collection Collector Reference Counting Bytecode Import Imports Package Packages Packaging Build
Test Tests Benchmark Benchmarks Performance Extension Extensions Lazy Evaluation Debugging Features
Feature Plan Behavior Behaviour Objections Lines Blank Comments Naming Conventions Convention Tabs
Spaces Encoding Whitespace Recommendations Principle Consistency Comparisons Values Names
""")
#: common word endings that rule a capitalised word out of a person name.
_NON_NAME_SUFFIX = re.compile(
    r"(?:tion|sion|ment|ness|ity|ance|ence|ism|ing|ings|ics|ical|ial|able|ible|ive|ives|ful|less|ous|ize|ise|ures|ions)$"
)
_SURNAME_PREFIX = re.compile(r"(?:Mc|Mac|De|Di|Da|Du|La|Le|Van|Von|O['’]|D['’]|L['’])[A-Z]")
#: given names that are also English words; the unit writing "mark" in lower case does not
#: make "Mark Shannon" an ordinary phrase.
_WORDLIKE_GIVEN_NAMES = _words("""
Mark Will Bill Frank Max Guy Jack Grace Rose Pat Victor Christian Miles Art Dawn Hope Ray Glen
Dean Chase Drew Gene Sage Rich Carol June Amber Summer Paul Barry Tim Ivy Eric Nick Rob Bob Don
""")
NAME_PARTICLES = _words("van von de der den la le du da dos del di bin ibn al ter ten")

#: head nouns of technical noun phrases (singular); plurals are derived.
_HEAD_SINGULARS = _words("""
type hint annotation checker checking inference variance subtype alias union variable constant
class method function instance attribute property descriptor metaclass decorator closure scope
namespace expression statement operator comprehension generator coroutine iterator iterable
awaitable callable protocol interface api abi library package module import hook finder loader
encoding docstring comment convention guide style syntax semantics keyword argument parameter
signature dictionary mapping sequence tuple loop release cycle branch policy manager context
pattern matching dispatch specialization binding assignment unpacking slicing lock mutex thread
threading interpreter collector collection counting count allocator allocation bytecode opcode
frame stack grammar parser tokenizer token literal exception error warning string object value
checker proposal specification implementation compatibility mode build extension buffer
environment schedule version object analysis system checking
""")


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


HEADS = {w: w for w in _HEAD_SINGULARS} | {_plural(w): w for w in _HEAD_SINGULARS} | {"semantics": "semantics"}
MODIFIER_STOP = _words("""
the a an this that these those its their our your his her my any some each every all no other
such same new old one two three more most many much few first second third last next previous
following above below of to in on for with by from as at is are be was were been being and or nor
not if but so than then also only just very which what when where who how why it they we you can
may will would should could must has have had do does did use used uses using e g i ie eg etc
certain various several both either neither own given specific particular existing different
possible current single multiple simple into about like between over under without within per via
valid invalid proper precise implicit explicit larger smaller large small big long short whole
entire full general special actual correct wrong appropriate arbitrary normal ordinary usual
typical original initial final empty corresponding relevant necessary required optional potential
available useful important significant obvious clear easy hard difficult similar related former
latter further earlier later older newer individual additional extra separate real good bad better best great
high low main major minor basic common usual inside outside tells tell make makes made ever even
declare declares declared specify specifies specifying define defines defined return returns
returned take takes allow allows allowed need needs needed provide provides provided support
supports supported call calls called add adds added create creates created get gets got give gives
see sees mean means want wants know knows think thinks say says said show shows shown contain
contains containing include includes including become becomes became keep keeps remain remains
seem seems same whether while during because since although though unless until upon onto toward
towards there here now still already yet again always never often sometimes usually perhaps maybe
instead otherwise rather quite too enough less least much well way ways lot lots kind kinds sort
sorts part parts case cases thing things something anything nothing everything someone anyone
work works working needed checked ones whose whom able unable likely unlikely sure true false
non pre post re un per cent etc ok okay yes via i.e e.g vs versus let lets making taking party
""")
#: -ed words that work as modifiers; others are mostly verbs ("PEP 3107 introduced syntax").
_ED_OK = _words("""
inferred declared constrained parameterized parametrized nested bound typed named deferred biased
decorated compiled interpreted specialized unbound untyped annotated generalized overloaded
protected reserved structured shared boxed unboxed mixed fixed qualified ordered sorted linked
cached threaded deprecated free-threaded user-defined built-in embedded pinned immortalized
""")
#: the expansions of acronyms, so "global interpreter lock" and "GIL" are one entity.
ACRONYM_EXPANSIONS = {
    "global interpreter lock": "GIL",
    "abstract base class": "ABC",
    "abstract syntax tree": "AST",
    "application programming interface": "API",
    "application binary interface": "ABI",
    "garbage collector": "GC",
    "garbage collection": "GC",
    "just-in-time compiler": "JIT",
    "integrated development environment": "IDE",
    "parsing expression grammar": "PEG",
    "method resolution order": "MRO",
    "read-eval-print loop": "REPL",
}
#: -ing words that do work as modifiers ("string literal", "pattern matching").
_ING_OK = _words("string typing programming threading logging debugging enclosing matching pickling tracing profiling")

# --------------------------------------------------------------------------- regexes

_EMAIL = re.compile(r"<[^<>\s@]*@[^<>\s]*>|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_OBFUSCATED_EMAIL = re.compile(r"\S+ at \S+ dot \S+")  # headers only: too costly for all prose
_URL = re.compile(r"<?\b(?:https?|ftp|mailto|file)://[^\s<>`]+>?|\bwww\.[^\s<>`]+")
_ROLE = re.compile(r":((?:[a-z]+:)?[a-z]+):`([^`]*)`")
_LITERAL = re.compile(r"``([^`]+?)``")
_LINK = re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?|`([^`]+)`__?")
_INTERPRETED = re.compile(r"(?<![`\w])`([^`\s][^`]{0,80}?)`(?![`_\w])")
_FOOTNOTE_REF = re.compile(r"\s*\[(?:\d+|#\w*|\*|[A-Za-z][\w-]*)\]_")
_STRONG = re.compile(r"\*\*([^*]+)\*\*|(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])")
_REF_UNDERSCORE = re.compile(r"(?<=[A-Za-z0-9])_(?=[\s,.;:)]|$)")
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\b[A-Z]\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\betc\.)(?<!\bvs\.)(?<!\bMr\.)(?<!\bDr\.)"
    r"(?<!\bcf\.)(?<!\bSt\.)[\"')\]]*\s+(?=[\"'(\[*`]*[A-Z0-9:])"
)
_PEP_REF = re.compile(r"\bPEPs?[ \t-]?(\d{1,4})\b")
_RFC_REF = re.compile(r"\bRFC[ \t-]?(\d{1,5})\b")
_PY_VERSION = re.compile(r"\b(?:C?Python|Py)[ \t]?([23](?:\.\d{1,2})?)(?![\d.]*\d)")
_WORD = re.compile(r"[^\W\d_](?:[\w'’-]*[^\W_])?")
_CAMEL = re.compile(r"\b(?:[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+|[a-z]+[A-Z]\w*|Py[A-Z_]\w+|[A-Z]{2,}[a-z]+[A-Z]\w*)\b")
_ACRONYM = re.compile(r"\b([A-Z][A-Z0-9]{1,5})(s?)\b")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_UNDERLINE = re.compile(r"([=\-~^\"'`#*+.:_])\1{2,}")
_TABLE_BORDER = re.compile(r"[=\-+| ]{3,}")
_CODE_LINE = re.compile(
    r"^(?:def |class |import |from \S+ import |return\b|raise\b|async def |await |@\w|#|//|\$ |"
    r"if .*:$|for .*:$|while .*:$|with .*:$|try:$|except\b.*:$|else:$|elif .*:$)|"
    r"[;{}]$|^\w[\w.]*\s*(?:=|\+=|-=|:=)\s|^\w[\w.]*\(.*\)$|^[\])}]"
)
_THIS_PEP = re.compile(r"\b[Tt]his (?:PEP|proposal|document)\b")
_UPPER = "A-Z" + "".join(c for c in map(chr, range(0xC0, 0x250)) if c.isupper())
_CAP_WORD = rf"[{_UPPER}](?:\.|[\w-]*(?:['’][A-Za-z][\w-]+)?)"
_CAPS_RUN = re.compile(
    rf"(?<![\w.'’-]){_CAP_WORD}(?:[ \t]+(?:(?:{'|'.join(sorted(NAME_PARTICLES))})[ \t]+)*{_CAP_WORD})*"
)
_TOKEN = re.compile(r"[^\W\d][\w-]*")
_LEXICON = frozenset(SOFTWARE) | frozenset(KNOWN_ORGS) | {w.lower() for w in TYPING_NAMES} | KNOWN_MODULES
_ACRONYM_STOP = _words("""
PEP PEPS I A OK NOT MUST SHOULD MAY SHALL AND OR NO YES ALL ANY NEW THE IS ARE DO IF ONLY NEVER
ALWAYS II III IV VI VII VIII IX XI XII TODO XXX NOTE ISBN URL URLS HTTP HTTPS HTML TBD EOF PR PRS
IE EG AM PM AKA FYI IMO IMHO BTW ETA PS BUT FOR TO OF IN ON AT AS BY AN IT BE WE US UK EU OP ID
IDS UP SO NB RFC RFCS FAQ API CC0 CC BY SA
""") - {"API"}
_ACRONYM_LONG_OK = _words("ASCII POSIX UNICODE CPYTHON PYPI ASGI WSGI JSON YAML TOML IEEE ANSI ECMA")


# --------------------------------------------------------------------------- helpers


def _clean(text: str) -> str:
    """Markup-free, whitespace-collapsed text for names and descriptions."""
    # Each substitution only runs when its trigger character is present: most sentences have
    # no URL, email or emphasis, and the guards halve the extractor's run time.
    if "://" in text or "www." in text:
        text = _URL.sub("", text)
    if "`" in text:
        text = _ROLE.sub(lambda m: _role_display(m.group(1), m.group(2)), text)
        text = _LINK.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), text)
        if "]_" in text:
            text = _FOOTNOTE_REF.sub("", text)
        text = text.replace("``", "").replace("`", "")
    elif "]_" in text:
        text = _FOOTNOTE_REF.sub("", text)
    if "*" in text:
        text = _STRONG.sub(lambda m: m.group(1) or m.group(2), text)
    if "_" in text:
        text = _REF_UNDERSCORE.sub("", text)
    if "@" in text:
        text = _EMAIL.sub("", text)
    return " ".join(text.split())


def _cap(text: str) -> str:
    """Clean and cap a description at MAX_DESCRIPTION characters, on a word boundary."""
    text = _clean(text)
    if len(text) <= MAX_DESCRIPTION:
        return text
    cut = text[: MAX_DESCRIPTION - 1]
    if " " in cut[MAX_DESCRIPTION // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "\u2026"


def _role_display(role: str, body: str) -> str:
    body = body.strip()
    if role in ("pep", "rfc"):
        num = re.search(r"\d+", body)
        label = body.split("<", 1)[0].strip() if "<" in body else ""
        ref = f"{role.upper()} {int(num.group())}" if num else body
        return label if label and not label.isdigit() else ref
    if "<" in body and body.endswith(">"):
        return body.split("<", 1)[0].strip()
    body = body.lstrip("~!")
    return body


@dataclass
class _Mention:
    name: str
    type: str


@dataclass
class _Sentence:
    raw: str  # with markup, for entity rules
    heading: bool = False
    mentions: list[_Mention] = field(default_factory=list)
    prose: str = ""  # markup spans blanked out
    covered: list[tuple[int, int]] = field(default_factory=list)


# --------------------------------------------------------------------------- header


@dataclass
class _Header:
    pep: str | None = None
    title: str = ""
    people: list[tuple[str, str]] = field(default_factory=list)  # (name, field)
    related: list[tuple[str, str]] = field(default_factory=list)  # (field, PEP n)
    python_version: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    end: int = 0


_FIELD = re.compile(r"^:?([A-Za-z][A-Za-z-]{0,30}):\s*(.*)$")
_PEOPLE_FIELDS = ("author", "authors", "bdfl-delegate", "pep-delegate", "sponsor", "editor", "editors")


def _person_names(value: str) -> list[str]:
    """Names from an Author-style field: "A <a@x>, B", "a@x (A)", "A and B"."""
    value = re.sub(r"\S+@\S+\s*\(([^)]*)\)", r"\1", value)  # old style: email (Name)
    value = _OBFUSCATED_EMAIL.sub("", _EMAIL.sub("", value))
    value = re.sub(r"\([^)]*\)", "", value)
    names = []
    for part in re.split(r",|;|\band\b|&", value):
        name = " ".join(part.split()).strip(" .,<>\"'")
        words = name.split()
        if not (1 <= len(words) <= 5) or len(name) > 60:
            continue
        capitalised = all(w[0].isupper() or w in NAME_PARTICLES for w in words) and words[0][0].isupper()
        if capitalised and not any(w in STOP_CAPS and w not in _WORDLIKE_GIVEN_NAMES for w in words):
            names.append(name)
    return names


def _parse_header(lines: list[str]) -> _Header:
    """The RFC-822-style field block a PEP (or front-matter document) starts with."""
    header = _Header()
    last = None
    seen_field = False
    for i, line in enumerate(lines[:MAX_HEADER_LINES]):
        stripped = line.strip()
        if not stripped:
            if seen_field:
                header.end = i
                break
            continue
        if stripped == "---" and not seen_field:  # YAML front matter fence
            continue
        if line[:1] in (" ", "\t") and last:
            header.fields[last] += " " + stripped
            header.end = i + 1
            continue
        m = _FIELD.match(stripped)
        if not m:
            break
        last = m.group(1).lower()
        header.fields[last] = m.group(2).strip()
        seen_field = True
        header.end = i + 1
    if not (set(header.fields) & {"pep", "title", *_PEOPLE_FIELDS}):
        return _Header()
    f = header.fields
    if re.fullmatch(r"\d{1,4}", f.get("pep", "")):
        header.pep = f"PEP {int(f['pep'])}"
    header.title = _clean(f.get("title", ""))
    for key in _PEOPLE_FIELDS:
        if key in f:
            header.people += [(n, key) for n in _person_names(f[key])]
    for key in ("requires", "replaces", "superseded-by"):
        for num in re.findall(r"\d{1,4}", f.get(key, "")):
            header.related.append((key, f"PEP {int(num)}"))
    version = re.search(r"\b([23]\.\d{1,2})", f.get("python-version", ""))
    if version:
        header.python_version = f"Python {version.group(1)}"
    return header


def _header_graph(header: _Header) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(name, type, description) entities and (a, b, description) relationships of a header."""
    entities: list[tuple[str, str, str]] = []
    rels: list[tuple[str, str, str]] = []
    pep = header.pep
    f = header.fields
    if pep:
        bits = [f'{pep} ("{header.title}")' if header.title else pep]
        kind = _clean(f.get("type", ""))
        bits.append(f"is a {kind} Python Enhancement Proposal" if kind else "is a Python Enhancement Proposal")
        if f.get("status"):
            bits.append(f"(status: {_clean(f['status'])}),")
        if f.get("created"):
            bits.append(f"created {_clean(f['created'])},")
        if header.python_version:
            bits.append(f"for {header.python_version},")
        authors = [n for n, role in header.people if role.startswith("author")]
        if authors:
            bits.append("by " + ", ".join(authors))
        entities.append((pep, "PEP", " ".join(bits).rstrip(",") + "."))
    subject = pep or (f'"{header.title}"' if header.title else "the document")
    roles = {"bdfl-delegate": "BDFL-Delegate", "pep-delegate": "PEP-Delegate"}
    for name, role in header.people:
        what = "an author" if role.startswith("author") else f"the {roles.get(role, role)}"
        desc = f"{name} is {what} of {subject}."
        entities.append((name, "PERSON", desc))
        if pep:
            rels.append((name, pep, desc))
    verbs = {"requires": "requires", "replaces": "replaces", "superseded-by": "is superseded by"}
    for key, other in header.related:
        if other == pep:
            continue
        desc = f"{subject} {verbs[key]} {other}."
        entities.append((other, "PEP", desc))
        if pep:
            rels.append((pep, other, desc))
    if header.python_version:
        desc = f"{subject} targets {header.python_version}."
        entities.append((header.python_version, "SOFTWARE", desc))
        if pep:
            rels.append((pep, header.python_version, desc))
    if pep and header.title:
        for name in _noun_phrases(header.title.lower(), [])[:3]:
            desc = f'{pep} is titled "{header.title}".'
            entities.append((name, "CONCEPT", desc))
            rels.append((pep, name, desc))
    return entities, rels


# --------------------------------------------------------------------------- body sentences

_SKIP_DIRECTIVES = ("code-block", "code", "sourcecode", "highlight", "literalinclude", "math", "raw",
                    "productionlist", "image", "figure", "include", "toctree", "contents", "csv-table",
                    "list-table", "table", "testcode", "doctest", "graphviz", "only", "index")  # fmt: skip


def _sentences(lines: list[str]) -> list[_Sentence]:
    """Prose sentences of reST/markdown/plain text.

    Literal blocks (after ``::``), code directives, doctest lines, code-looking indented lines,
    comments and link targets are skipped: they hold identifiers that are examples, not
    subjects. A one-line paragraph over a section underline is marked as a heading.
    """
    out: list[_Sentence] = []
    paragraph: list[str] = []
    skip_indent: int | None = None  # skip lines indented deeper than this
    expect_literal = False
    in_fence = False

    def flush(heading: bool = False) -> None:
        nonlocal expect_literal
        if not paragraph:
            return
        text = " ".join(paragraph)
        paragraph.clear()
        expect_literal = text.endswith("::")
        if heading:
            out.append(_Sentence(raw=text[:MAX_SENTENCE_CHARS], heading=True))
            return
        for sentence in _SENTENCE_END.split(text):
            sentence = sentence.strip()
            while sentence:
                # a run-on "sentence" (a table, a 100k-char line) is cut at a blank near the limit
                cut = len(sentence)
                if cut > MAX_SENTENCE_CHARS:
                    cut = sentence.rfind(" ", MAX_SENTENCE_CHARS // 2, MAX_SENTENCE_CHARS)
                    cut = MAX_SENTENCE_CHARS if cut < 0 else cut
                piece, sentence = sentence[:cut].strip(), sentence[cut:].strip()
                if len(piece) > 3:
                    out.append(_Sentence(raw=piece))

    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith(("```", "~~~")):
            flush()
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            flush()
            continue
        if expect_literal and not paragraph and indent > 0:
            skip_indent = indent - 1
            expect_literal = False
            continue
        expect_literal = False
        if _UNDERLINE.fullmatch(stripped):
            flush(heading=len(paragraph) == 1)
            continue
        if _TABLE_BORDER.fullmatch(stripped) or stripped.startswith((">>>", "... ", "+--", "|")):
            flush()
            continue
        if stripped.startswith(".."):
            flush()
            directive = re.match(r"\.\.\s+([\w:-]+)::", stripped)
            footnote = re.match(r"\.\.\s+\[[^\]]+\]\s+(.*)", stripped)
            if footnote:
                paragraph.append(footnote.group(1))
            elif directive is None or directive.group(1) in _SKIP_DIRECTIVES:
                skip_indent = indent  # comment, link target or code directive: skip its body
            continue
        if stripped.startswith("#") and not paragraph and re.match(r"#{1,6}\s", stripped):
            flush()
            paragraph.append(stripped.lstrip("#").strip())  # markdown heading
            flush(heading=True)
            continue
        if indent >= 2 and _CODE_LINE.search(stripped):
            flush()
            continue
        if len(paragraph) == 1 and _is_title_line(paragraph[0]):
            flush(heading=True)  # plain-text title line directly above its first paragraph
        paragraph.append(stripped)
    flush()
    return out


def _is_title_line(line: str) -> bool:
    """A short title-case line without closing punctuation ("The Gettysburg Address")."""
    if len(line) > 70 or line[-1:] in ".,;:!?)-" or line.endswith("::"):
        return False
    words = line.split()
    return 1 <= len(words) <= 10 and all(w[:1].isupper() or w in _TITLE_SMALL_WORDS for w in words)


_TITLE_SMALL_WORDS = _words("a an the of and or in on at to for with by from as vs via")


# --------------------------------------------------------------------------- mention rules


def _code_entity(text: str, role: str | None = None) -> list[tuple[str, str]]:
    """Typed entities for a piece of code (a ``literal``, `interpreted` text or a role body).

    Dotted names also yield their module (``typing.Protocol`` -> typing), which links a class
    or function to its module through the shared sentence.
    """
    s = text.strip()
    if role == "term":
        term = _clean(s).lower()
        return [(term, "CONCEPT")] if 2 < len(term) <= 60 else []
    if role in ("pypi",):
        return [(s, "SOFTWARE")] if re.fullmatch(r"[\w.-]{2,60}", s) else []
    if role in ("file", "samp", "ref", "doc", "sup", "sub", "abbr", "kbd", "menuselection", "guilabel"):
        return []
    called = s.endswith(")")
    s = re.sub(r"\(.*\)$", "", s).lstrip("~!").rstrip(".,:;")
    if not 2 <= len(s) <= 80 or not _IDENT.fullmatch(s):
        return []
    parts = s.split(".")
    last = parts[-1]
    rkind = (role or "").split(":")[-1]
    if parts[-1] in ("py", "pyi", "pyx", "pyd", "so", "c", "h", "txt", "cfg", "toml", "rst", "md", "json", "in"):
        stem = ".".join(parts[:-1])
        return [(stem, "MODULE")] if parts[-1] in ("py", "pyi") and stem in KNOWN_MODULES else []
    module = _module_prefix(parts)
    found: list[tuple[str, str]] = []
    bare_module = len(parts) == 1 and s in KNOWN_MODULES and not called and rkind in ("", "data")
    if rkind == "mod" or s in SUBMODULES or bare_module:
        return [(s, "MODULE")]
    if rkind in ("class", "exc", "type", "struct", "union", "enum"):
        etype = "CLASS"
    elif rkind in ("func", "meth", "macro", "function", "method", "decorator", "deco"):
        etype = "FUNCTION"
    elif rkind in ("data", "attr", "const", "member", "var", "envvar", "keyword", "option", "opcode", "token"):
        etype = "CODE"
    elif len(parts) == 1 and s.lower() in LITERAL_STOP:
        return []
    elif last.startswith("__") and last.endswith("__") and len(last) > 4:
        etype = "CODE" if last in DUNDER_ATTRIBUTES and not called else "FUNCTION"
    elif last[0].isupper():
        if len(last) <= 3 and len(parts) == 1:
            return []  # T, T1, KT: type-variable names in examples
        if re.sub(r"^_?Py_", "", last).upper() == re.sub(r"^_?Py_", "", last):
            etype = "CODE"  # CONSTANT_NAME, Py_TPFLAGS_MAPPING
        elif last.startswith("Py") and "_" in last:
            etype = "FUNCTION"  # C API
        else:
            etype = "CLASS"
    elif called:
        etype = "FUNCTION"
    elif len(parts) == 1:
        if s in SALIENT_KEYWORDS:
            return [(SALIENT_KEYWORDS[s], "CONCEPT")]
        elif s in BUILTIN_CLASSES:
            etype = "CLASS"
        elif s in BUILTIN_FUNCTIONS:
            etype = "FUNCTION"
        elif "_" in s.strip("_"):
            etype = "CODE"
        else:
            return []  # a plain word in backticks: an example variable, not a subject
    elif module or parts[0] in ("str", "bytes", "list", "dict", "set", "tuple", "int", "object", "type", "frozenset"):
        etype = "CODE"
    else:
        return []  # self.name, db.fetch: example code
    if len(parts) > 1 and not module and last[0].islower() and etype not in ("FUNCTION", "CODE"):
        return []
    found.append((s, etype))
    if module and module != s:
        found.append((module, "MODULE"))
    return found


def _module_prefix(parts: list[str]) -> str | None:
    for n in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in SUBMODULES or (n == 1 and prefix in KNOWN_MODULES):
            return prefix
    return None


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the spans replaced by separators, so later rules cannot match across them."""
    if not spans:
        return text
    chars = list(text)
    for a, b in spans:
        for k in range(a, b):
            chars[k] = "|"
    return "".join(chars)


def _overlaps(span: tuple[int, int], covered: list[tuple[int, int]]) -> bool:
    a, b = span
    return any(a < d and c < b for c, d in covered)


def _tokens(prose: str) -> list[tuple[str, int, int]]:
    """Words (letters, digits, ``_`` and ``-``) with their spans; one pass shared by the rules."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(prose)]


def _noun_phrases(
    prose: str, covered: list[tuple[int, int]], tokens: list[tuple[str, int, int]] | None = None
) -> list[str]:
    """Technical noun phrases: up to two modifiers plus a run of head nouns, lower case.

    A phrase ends at the last of consecutive head nouns ("type checker", "global interpreter
    lock") and its last word is singularised, so "type checkers" and "Type Checker" are one
    entity. Modifiers stop at determiners, verbs and vague adjectives, so "the valid type"
    gives nothing.
    """
    toks = _tokens(prose) if tokens is None else tokens
    lows = [t[0].lower() for t in toks]
    out: list[str] = []
    n = len(toks)
    i = 0
    while i < n:
        if lows[i] not in HEADS:
            i += 1
            continue
        j = i  # extend over following heads joined by a single space
        while j + 1 < n and lows[j + 1] in HEADS and toks[j + 1][1] == toks[j][2] + 1 and prose[toks[j][2]] == " ":
            j += 1
        mods: list[str] = []
        k = i - 1
        while k >= 0 and len(mods) < 2 and toks[k][2] + 1 == toks[k + 1][1] and prose[toks[k][2]] == " ":
            raw, w = toks[k][0], lows[k]
            if (
                w in MODIFIER_STOP
                or raw[0].isupper()
                or w.endswith("ly")
                or (w.endswith("ing") and w not in _ING_OK)
                or (w.endswith("ed") and w not in _ED_OK)
                or len(w) < 3
                or not w.replace("-", "").isalpha()
            ):
                break
            mods.insert(0, w)
            k -= 1
        run_raw = [toks[x][0] for x in range(i, j + 1)]
        run = lows[i : j + 1]
        span = (toks[k + 1][1], toks[j][2])
        i = j + 1
        if not mods and any(w[0].isupper() for w in run_raw):
            continue  # "Type Hints" heading words alone
        phrase_words = mods + run[:-1] + [HEADS[run[-1]]]
        if len(phrase_words) < 2 or _overlaps(span, covered):
            continue
        if len(set(phrase_words)) < len(phrase_words):
            continue  # "type object type"
        phrase = " ".join(phrase_words[-4:])
        phrase = ACRONYM_EXPANSIONS.get(phrase, phrase)
        if phrase not in out:
            out.append(phrase)
    return out


def _is_person(words: list[str], lower_vocab: frozenset[str]) -> bool:
    """Whether a capitalised run reads as a person's name.

    Besides shape, uses the unit itself: a surname the text also writes in lower case ("Blank
    Lines", "Container Thread") is an ordinary word, not a name.
    """
    core = [w for w in words if w not in NAME_PARTICLES]
    if not 2 <= len(core) <= 4 or len(core) != len([w for w in words if w[0].isupper()]):
        return False
    for idx, w in enumerate(core):
        bare = w.rstrip(".")
        if len(bare) == 1:
            if not w.endswith("."):
                return False  # "C APIs"
            continue  # an initial
        if sum(ch.isupper() for ch in bare) > 1 and not _SURNAME_PREFIX.match(bare):
            return False  # "HotSpot", "APIs": identifiers, not names
        if not (bare[0].isupper() and bare[1:].replace("-", "").replace("'", "").replace("’", "").isalpha()):
            return False
        if bare.isupper() or bare in DATE_WORDS or bare in TECH_CAPS or bare in ORG_WORDS:
            return False
        suffix = _NON_NAME_SUFFIX.search(bare.lower())
        if suffix and len(bare) > 5 and not (idx == len(core) - 1 and suffix.group() == "ing"):
            return False  # "Scoping Behavior"; a final -ing may be a surname (Turing, Fleming)
        if bare.lower() in lower_vocab and (idx > 0 or bare not in _WORDLIKE_GIVEN_NAMES):
            return False
    return True


def _caps_runs(prose: str) -> list[tuple[list[str], int, int]]:
    """Runs of capitalised words (with name particles and initials) joined by blanks."""
    return [(m.group().split(), m.start(), m.end()) for m in _CAPS_RUN.finditer(prose)]


def _sentence_mentions(s: _Sentence, lower_vocab: frozenset[str]) -> None:
    """Fill `s.mentions` (in rule order, which is also priority order) and `s.prose`."""
    raw = s.raw
    if "://" in raw or "www." in raw:
        raw = _URL.sub(lambda m: " " * len(m.group()), raw)
    if "@" in raw:
        raw = _EMAIL.sub(lambda m: " " * len(m.group()), raw)
    found: dict[str, _Mention] = {}
    covered: list[tuple[int, int]] = []

    def add(name: str, etype: str) -> None:
        name = " ".join(name.split())
        if name and name.upper() not in found:
            found[name.upper()] = _Mention(name, etype)

    # 1. markup: roles, literals, interpreted text -- typed from the role or the code's shape;
    # hyperlinks keep their text (`Guido van Rossum <url>`_ is still a name)
    if "`_" in raw:
        raw = _LINK.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), raw)
    for m in _ROLE.finditer(raw):
        role, body = m.group(1), m.group(2)
        covered.append(m.span())
        if role in ("pep", "rfc"):
            num = re.search(r"\d+", body.split("<")[-1])
            if num:
                add(f"{role.upper()} {int(num.group())}", "PEP" if role == "pep" else "DOCUMENT")
            continue
        target = body[body.index("<") + 1 : -1] if "<" in body and body.endswith(">") else body
        for name, etype in _code_entity(target, role):
            add(name, etype)
    raw_blanked = _blank(raw, covered)
    for regex in (_LITERAL, _INTERPRETED):
        for m in regex.finditer(raw_blanked):
            if _overlaps(m.span(), covered):
                continue
            covered.append(m.span())
            for name, etype in _code_entity(m.group(1)):
                add(name, etype)
        raw_blanked = _blank(raw, covered)
    prose = raw_blanked
    if "]_" in prose:
        prose = _FOOTNOTE_REF.sub(lambda m: " " * len(m.group()), prose)
    if "*" in prose:
        prose = _STRONG.sub(lambda m: " " + (m.group(1) or m.group(2)) + " ", prose)
    covered = []

    # 2. references
    for regex, kind, etype in ((_PEP_REF, "PEP", "PEP"), (_RFC_REF, "RFC", "DOCUMENT")):
        for m in regex.finditer(prose):
            add(f"{kind} {int(m.group(1))}", etype)
            covered.append(m.span())
    for m in _PY_VERSION.finditer(prose):
        add(f"Python {m.group(1)}", "SOFTWARE")
        covered.append(m.span())

    # 3. capitalised multi-word names
    first_word = _WORD.search(prose)
    for words, start, end in _caps_runs(prose):
        if _overlaps((start, end), covered):
            continue
        lead = 0
        while lead < len(words) and (words[lead] in STOP_CAPS or words[lead] in DATE_WORDS):
            lead += 1
        words = words[lead:]
        if len(words) < 2:
            continue
        # split at inner stop words ("Guido and Tim" is not one name)
        if any(w in STOP_CAPS or w in DATE_WORDS for w in words):
            continue
        name = " ".join(words)
        if sum(1 for w in words if w.isupper() and len(w) > 1) == len(words):
            continue  # SHOUTING or a row of acronyms
        if s.heading:
            continue  # "Blank Lines", "Group Patterns": section titles, not names
        if any(w in ORG_WORDS for w in words):
            while len(words) > 2 and words[-1] in _ROLE_WORDS:
                words = words[:-1]  # "Python Software Foundation Director" -> the foundation
            add(" ".join(words), "ORGANIZATION")
        elif words[-1] in PLACE_WORDS and (words[-1] != "States" or "United" in words):
            add(name, "GEO")
        elif _is_person(words, lower_vocab):
            add(name, "PERSON")
        else:
            continue  # title-case prose ("Garbage Collection"): the noun-phrase rule may take it
        covered.append((start, end))

    # 4. CamelCase identifiers, software names, typing names in prose
    for m in _CAMEL.finditer(prose):
        if _overlaps(m.span(), covered):
            continue
        w = m.group()
        if w.lower() in SOFTWARE:
            add(SOFTWARE[w.lower()], "SOFTWARE")
        elif w.lower() in KNOWN_ORGS:
            add(KNOWN_ORGS[w.lower()], "ORGANIZATION")
        elif w.startswith("Py") and "_" in w:
            add(w, "CODE" if w[3:].upper() == w[3:] else "FUNCTION")
        elif w.endswith("s") and w[:-1] in TYPING_NAMES:
            add(w[:-1], "CLASS")
        elif re.fullmatch(r"(?:Mc|Mac|De|Di|Da|La|Le|Van|Von|O)[A-Z][a-z]+", w):
            continue  # a surname ("DeVito") outside a full name; surname pass handles it
        else:
            if w.endswith("s") and not w.endswith("ss") and _CAMEL.fullmatch(w[:-1]):
                w = w[:-1]  # "PyObjects" -> PyObject
            add(w, "CLASS")
        covered.append(m.span())
    tokens = _tokens(prose)
    for w, start, end in tokens:
        low = w.lower()
        if low not in _LEXICON or (start and prose[start - 1] == ".") or _overlaps((start, end), covered):
            continue
        if low in SOFTWARE and (w == SOFTWARE[low] or SOFTWARE[low].islower()):
            add(SOFTWARE[low], "SOFTWARE")
        elif low in KNOWN_ORGS and w == KNOWN_ORGS[low]:
            add(w, "ORGANIZATION")
        elif w in TYPING_NAMES and start > (first_word.start() if first_word else 0):  # "Any" starts sentences
            add(w, "CLASS")
        elif w in PROSE_MODULES or (
            low == w and w in KNOWN_MODULES and len(w) > 2 and _module_context(prose, start, end)
        ):
            add(w, "MODULE")
            nxt = re.match(r"\s+(modules?|packages?)\b", prose[end:])
            covered.append((start, end + (nxt.end() if nxt else 0)))
            continue
        else:
            continue
        covered.append((start, end))

    # 5. acronyms
    for m in _ACRONYM.finditer(prose):
        acro = m.group(1)
        if _overlaps(m.span(), covered) or acro in _ACRONYM_STOP or acro.isdigit():
            continue
        if len(acro) > 4 and acro not in _ACRONYM_LONG_OK:
            continue
        if not any(ch.isalpha() for ch in acro[1:]):
            continue
        if acro.lower() in SOFTWARE:
            add(SOFTWARE[acro.lower()], "SOFTWARE")
        else:
            add(acro, "CONCEPT")
        covered.append(m.span())

    # 6. technical noun phrases
    for phrase in _noun_phrases(prose, covered, tokens):
        add(phrase, "CONCEPT")

    s.mentions = list(found.values())
    s.prose = prose
    s.covered = covered


def _module_context(prose: str, start: int, end: int) -> bool:
    """`import typing`, `from typing import`, `the typing module`."""
    before = prose[max(0, start - 12) : start]
    after = prose[end : end + 12]
    return bool(re.search(r"\b(?:import|from)\s+$", before) or re.match(r"\s+(?:modules?|packages?|library)\b", after))


# --------------------------------------------------------------------------- the entry point


def extract_offline(text: str) -> GraphExtraction:
    """Entities and relationships of one text unit; the same text gives the same answer.

    Entities keep the first surface form the unit uses (case variants map to it, since the
    flow merges titles case-insensitively) and the first sentence mentioning them as their
    description. Pairs of entities in one sentence become relationships whose strength is
    the number of sentences the pair shares.
    """
    if not text or not text.strip():
        return GraphExtraction(entities=[], relationships=[])
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", " ")
    lines = text.split("\n")
    header = _parse_header(lines)
    sentences = _sentences(lines[header.end :])
    lower_vocab = frozenset(re.findall(r"\b[a-z][a-z'-]+\b", text))

    entities: dict[str, tuple[str, str, str]] = {}  # NAME -> (name, type, description)
    pairs: dict[tuple[str, str], list] = {}  # (a, b) -> [count, description]

    def entity(name: str, etype: str, description: str) -> str:
        key = name.upper()
        if key not in entities:
            entities[key] = (name, etype, _cap(description))
        return entities[key][0]

    def relate(a: str, b: str, description: str) -> None:
        if a.upper() == b.upper():
            return
        key = (a, b) if a < b else (b, a)
        entry = pairs.setdefault(key, [0, description])
        entry[0] += 1

    header_entities, header_rels = _header_graph(header)
    for name, etype, desc in header_entities:
        entity(name, etype, desc)
    for a, b, desc in header_rels:
        relate(entities[a.upper()][0], entities[b.upper()][0], _cap(desc))

    for s in sentences:
        _sentence_mentions(s, lower_vocab)

    # Persons named in full somewhere in the unit are also recognised by surname ("van Rossum",
    # "DeVito") or, away from a sentence start, by a distinctive given name ("Guido").
    persons = [v[0] for v in entities.values() if v[1] == "PERSON"]
    persons += [m.name for s in sentences for m in s.mentions if m.type == "PERSON"]
    short: dict[str, str | None] = {}
    for full in dict.fromkeys(persons):
        words = [w for w in full.split() if w not in NAME_PARTICLES and len(w.rstrip(".")) > 1]
        for idx, w in enumerate(words[-1:] + words[:1]):
            if len(w) < 3 or w in STOP_CAPS or w in TECH_CAPS or w.lower() in lower_vocab:
                continue
            if idx == 1 and len(w) < 4:
                continue
            short[w] = full if short.get(w, full) == full else None
    short = {k: v for k, v in short.items() if v}
    if short:
        pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in sorted(short)) + r")\b")
        for s in sentences:
            if s.heading:
                continue
            have = {m.name.upper() for m in s.mentions}
            for m in pattern.finditer(s.prose):
                full = short[m.group(1)]
                if _overlaps(m.span(), s.covered) or full.upper() in have or m.start() == 0:
                    continue
                s.mentions.append(_Mention(full, "PERSON"))
                have.add(full.upper())
            s.mentions = [mm for mm in s.mentions if not (mm.type == "CLASS" and mm.name in short)]

    for s in sentences:
        mentions = list(s.mentions)
        if header.pep and _THIS_PEP.search(s.prose) and not s.heading:
            mentions.insert(0, _Mention(header.pep, "PEP"))
        names: list[str] = []
        for mention in mentions:
            name = entity(mention.name, mention.type, s.raw)
            if name not in names:
                names.append(name)
        names = names[:MAX_ENTITIES_PER_SENTENCE]
        if len(names) < 2:
            continue
        description = None  # cleaned only when the sentence introduces a new pair
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                key = (a, b) if a < b else (b, a)
                entry = pairs.get(key)
                if entry is None:
                    description = description or _cap(s.raw)
                    pairs[key] = [1, description]
                else:
                    entry[0] += 1

    return GraphExtraction(
        entities=[ExtractedEntity(name=n, type=t, description=d) for n, t, d in entities.values()],
        relationships=[
            ExtractedRelationship(source=a, target=b, description=desc, strength=float(count))
            for (a, b), (count, desc) in pairs.items()
        ],
    )
