"""Pure, seeded generators for bAbI-style questions with their facts hidden in filler text (BABILong).

A story is a list of fact sentences about people, places and objects (bAbI's own small world: four people,
six places, three objects), of which one, two or three are the supporting facts of the question:

- ``qa1`` single supporting fact: people move around; "where is mary ?" -> the place of her last move.
- ``qa2`` two supporting facts: someone picks up an object; "where is the milk ?" -> where the person
  holding it went last (the pick-up and that move).
- ``qa3`` three supporting facts: someone picks up an object and moves on; "where was the apple before
  the office ?" -> the place the holder was in before carrying it into the office (the pick-up and two
  moves). The object's path (where it was picked up, then every place it was carried to) visits each
  place once, so the answer is unique.

The other facts are distractors (other people moving, the holder moving before the pick-up). Facts keep
their order and sit between filler sentences at seeded random boundaries. Filler sentences that mention
any person, place or object of the story world are dropped from the corpus before use, so no filler
sentence can state a fact, let alone one that changes the answer.

Tokens are words: ids 0-2 are ``<pad>``, ``<q>`` (the question starts) and ``<a>`` (the answer follows),
then :data:`STORY_WORDS`, then ``filler_vocab`` buckets that every other word is hashed into (crc32), so the
vocabulary size is known before any corpus is read. A sample is ``[story][<q>][question][<a>]`` of exactly
``context_length`` tokens, and the label of the last position is the answer word.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PEOPLE = ("mary", "john", "daniel", "sandra")
PLACES = ("bathroom", "hallway", "garden", "office", "kitchen", "bedroom")
OBJECTS = ("football", "apple", "milk")
MOVES = ("went to", "moved to", "journeyed to", "travelled to", "went back to")
PICKUPS = ("picked up", "got", "grabbed", "took")
ENTITIES = frozenset(PEOPLE + PLACES + OBJECTS)
STORY_WORDS = (
    *PEOPLE, *PLACES, *OBJECTS, "went", "moved", "journeyed", "travelled", "back", "to", "picked", "up", "got",
    "grabbed", "took", "the", "where", "is", "was", "before", ".", "?",
)
PAD_ID, QUESTION_ID, ANSWER_ID = 0, 1, 2
SPECIALS = ("<pad>", "<q>", "<a>")
WORD_IDS = {w: i + len(SPECIALS) for i, w in enumerate(STORY_WORDS)}
FILLER_BASE = len(SPECIALS) + len(STORY_WORDS)
TASKS = ("qa1", "qa2", "qa3")
MIN_FACTS = {"qa1": 1, "qa2": 2, "qa3": 3}
MAX_FACT_WORDS = 6  # "mary journeyed to the garden ." ; the longest question has 8 words
MAX_QUESTION_WORDS = 8
_WORD = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def vocab_size(filler_vocab: int) -> int:
    return FILLER_BASE + filler_vocab


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def encode(tokens: Iterable[str], filler_vocab: int) -> list[int]:
    """Word ids: a story word has its own id, any other word its crc32 bucket after the story words."""
    return [WORD_IDS.get(w, FILLER_BASE + zlib.crc32(w.encode()) % filler_vocab) for w in tokens]


def decode(ids: Iterable[int]) -> str:
    """Story words and specials by name, filler buckets as ``~N``."""
    out = []
    for i in ids:
        i = int(i)
        if i < len(SPECIALS):
            out.append(SPECIALS[i])
        elif i < FILLER_BASE:
            out.append(STORY_WORDS[i - len(SPECIALS)])
        else:
            out.append(f"~{i - FILLER_BASE}")
    return " ".join(out)


@dataclass(frozen=True)
class Story:
    """facts: sentences in order; supporting: indices of the facts the answer follows from."""

    task: str
    facts: tuple[str, ...]
    question: str
    answer: str
    supporting: tuple[int, ...]


def _move(rng, person: str, place: str) -> str:
    return f"{person} {rng.choice(MOVES)} the {place} ."


def _distractors(rng, n: int, people: Sequence[str]) -> list[tuple[str, str]]:
    return [(rng.choice(people), rng.choice(PLACES)) for _ in range(n)]


def story_qa1(rng: random.Random, n_facts: int) -> Story:
    moves = _distractors(rng, n_facts, PEOPLE)
    person = rng.choice(sorted({p for p, _ in moves}))
    last = max(i for i, (p, _) in enumerate(moves) if p == person)
    facts = tuple(_move(rng, p, place) for p, place in moves)
    return Story("qa1", facts, f"where is {person} ?", moves[last][1], (last,))


def story_qa2(rng: random.Random, n_facts: int) -> Story:
    holder, obj = rng.choice(PEOPLE), rng.choice(OBJECTS)
    others = [p for p in PEOPLE if p != holder]
    pick = rng.randrange(n_facts - 1)  # the holder moves at least once after the pick-up
    events: list = _distractors(rng, n_facts - 1, others)
    events.insert(pick, ("pick", holder))
    after = rng.sample(range(pick + 1, n_facts), rng.randint(1, n_facts - 1 - pick))
    for i in after:
        events[i] = (holder, rng.choice(PLACES))
    facts, last = [], None
    for i, event in enumerate(events):
        if event[0] == "pick":
            facts.append(f"{holder} {rng.choice(PICKUPS)} the {obj} .")
        else:
            facts.append(_move(rng, *event))
            if event[0] == holder:
                last = i
    return Story("qa2", tuple(facts), f"where is the {obj} ?", events[last][1], (pick, last))


def story_qa3(rng: random.Random, n_facts: int) -> Story:
    holder, obj = rng.choice(PEOPLE), rng.choice(OBJECTS)
    others = [p for p in PEOPLE if p != holder]
    n_carry = rng.randint(2, min(n_facts - 1, len(PLACES) - 1))  # distinct places visited while holding it
    slots = sorted(rng.sample(range(1, n_facts), n_carry))
    pick = rng.randrange(slots[0])
    events: list = [(rng.choice(PEOPLE if i < pick else others), rng.choice(PLACES)) for i in range(n_facts)]
    events[pick] = ("pick", holder)
    # where the object was picked up is on its path too: the carried places differ from it
    start = [place for who, place in events[:pick] if who == holder][-1:]
    carried = rng.sample([p for p in PLACES if p not in start], n_carry)
    for slot, place in zip(slots, carried, strict=True):
        events[slot] = (holder, place)
    k = rng.randrange(1, n_carry)  # ask about the k-th carried place: the answer is the one before it
    facts = [f"{holder} {rng.choice(PICKUPS)} the {obj} ." if e[0] == "pick" else _move(rng, *e) for e in events]
    question = f"where was the {obj} before the {carried[k]} ?"
    return Story("qa3", tuple(facts), question, carried[k - 1], (pick, slots[k - 1], slots[k]))


STORIES = {"qa1": story_qa1, "qa2": story_qa2, "qa3": story_qa3}


def fact_free_sentences(text: str, filler_vocab: int) -> list[list[int]]:
    """The corpus as encoded sentences (split after ``. ! ?``), without any sentence naming a person,
    place or object of the story world."""
    sentences, current = [], []
    for w in words(text):
        current.append(w)
        if w in ".!?":
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return [encode(s, filler_vocab) for s in sentences if not ENTITIES.intersection(s)]


@dataclass(frozen=True)
class Sample:
    """input_ids: ``context_length`` ids ending with ``<a>``; answer: the answer word's id; fact_starts:
    where each fact begins in input_ids."""

    input_ids: list[int]
    answer: int
    fact_starts: tuple[int, ...]
    story: Story


def hide_in_filler(
    rng: random.Random, story: Story, pool: Sequence[list[int]], *, context_length: int, filler_vocab: int
) -> Sample:
    """Facts at random sentence boundaries of filler drawn from ``pool`` (consecutive sentences from a
    random start, cycling), question and ``<a>`` at the end, exactly ``context_length`` tokens."""
    facts = [encode(words(f), filler_vocab) for f in story.facts]
    question = [QUESTION_ID, *encode(words(story.question), filler_vocab), ANSWER_ID]
    room = context_length - len(question) - sum(map(len, facts))
    if room < 0:
        raise ValueError(f"context_length {context_length} is too short for {len(facts)} facts and the question")
    filler, n = [], 0
    if room and not pool:
        raise ValueError("the filler corpus has no sentence free of story words")
    i = rng.randrange(len(pool)) if pool else 0
    while n < room:
        sentence = pool[i % len(pool)][: room - n]
        filler.append(sentence)
        n += len(sentence)
        i += 1
    bounds = sorted(rng.choices(range(len(filler) + 1), k=len(facts)))  # facts keep their order
    ids, starts, f = [], [], 0
    for b in range(len(filler) + 1):
        while f < len(facts) and bounds[f] == b:
            starts.append(len(ids))
            ids.extend(facts[f])
            f += 1
        if b < len(filler):
            ids.extend(filler[b])
    ids.extend(question)
    return Sample(ids, WORD_IDS[story.answer], tuple(starts), story)
