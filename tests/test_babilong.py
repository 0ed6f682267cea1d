"""The babilong task: hand-written stories score as expected, generated stories hold their facts and only
them, filler never states a fact, lengths from one segment to 1M tokens, real rows through datasets."""

from __future__ import annotations

import json
import random

import pytest
import torch

import rmtzoo
from rmtzoo.tasks import _babi as babi
from rmtzoo.tasks.babilong import BabilongParams, BabilongTask


def solve(facts, question: str) -> str:
    """An independent reader of bAbI stories: tracks who is where and who holds what, fact by fact."""
    where, holder, trail = {}, {}, {}
    for fact in facts:
        w = babi.words(fact)
        person = w[0]
        if w[-3:-1][0] == "the" and w[-2] in babi.PLACES:
            where[person] = w[-2]
            for obj, who in holder.items():
                if who == person:
                    trail[obj].append(w[-2])
        elif w[-2] in babi.OBJECTS:
            holder[w[-2]], trail[w[-2]] = person, [where.get(person)]
    q = babi.words(question)
    if q[:2] == ["where", "is"] and q[2] in babi.PEOPLE:
        return where[q[2]]
    if q[:3] == ["where", "is", "the"]:
        return where[holder[q[3]]]
    obj, place = q[3], q[6]
    path = trail[obj]
    return path[path.index(place) - 1]


HAND_WRITTEN = [
    (("mary went to the kitchen .", "john moved to the garden .", "mary travelled to the office ."),
     "where is mary ?", "office"),
    (("sandra grabbed the milk .", "daniel went to the hallway .", "sandra journeyed to the bedroom ."),
     "where is the milk ?", "bedroom"),
    (("john took the apple .", "john went to the garden .", "mary went to the garden .", "john moved to the office ."),
     "where was the apple before the office ?", "garden"),
]


@pytest.mark.parametrize("facts, question, answer", HAND_WRITTEN)
def test_the_reader_answers_hand_written_stories(facts, question, answer):
    assert solve(facts, question) == answer


@pytest.mark.parametrize("qa", babi.TASKS)
@pytest.mark.parametrize("n_facts", [3, 5, 9])
def test_generated_answers_follow_from_the_supporting_facts(qa, n_facts):
    rng = random.Random(f"{qa}{n_facts}")
    for _ in range(200):
        story = babi.STORIES[qa](rng, n_facts)
        assert len(story.facts) == n_facts and len(story.supporting) == babi.MIN_FACTS[qa]
        assert solve(story.facts, story.question) == story.answer
        # the supporting facts alone give the same answer
        assert solve([story.facts[i] for i in story.supporting], story.question) == story.answer


def test_one_fact_qa1_asks_about_the_only_mover():
    rng = random.Random("qa1-one-fact")
    for _ in range(100):
        story = babi.story_qa1(rng, 1)
        (fact,) = story.facts
        w = babi.words(fact)
        assert story.question == f"where is {w[0]} ?" and story.answer == w[-2] and story.supporting == (0,)


def test_hide_in_filler_on_a_hand_written_story():
    """A hand-written story in a hand-written two-sentence filler: the fact is there once, whole, at a
    sentence boundary; everything else is the filler's sentences in order (cycling, cut to fit); the
    question and ``<a>`` close the sample and the answer is the place the fact names."""
    story = babi.Story("qa1", ("mary went to the kitchen .",), "where is mary ?", "kitchen", (0,))
    sky, rain = babi.encode(babi.words("the sky is blue ."), 16), babi.encode(babi.words("it rained ."), 16)
    fact = babi.encode(babi.words(story.facts[0]), 16)
    question = [babi.QUESTION_ID, *babi.encode(babi.words("where is mary ?"), 16), babi.ANSWER_ID]
    for seed in range(20):
        for length in (12, 20, 27):  # no filler, one full cycle, a cycle and a cut sentence
            sample = babi.hide_in_filler(random.Random(seed), story, [sky, rain], context_length=length, filler_vocab=16)
            ids = sample.input_ids
            assert len(ids) == length and ids[-len(question):] == question
            (start,) = sample.fact_starts
            assert ids[start:start + len(fact)] == fact and sample.answer == babi.WORD_IDS["kitchen"]
            filler = ids[:start] + ids[start + len(fact):-len(question)]
            cycle = (sky + rain) * 3
            assert any(filler == cycle[k:k + len(filler)] for k in (0, len(sky))), babi.decode(ids)
            boundaries = {0, len(filler)} | {k for k in range(len(filler) + 1)
                                             if filler[:k] and filler[k - 1] == babi.WORD_IDS["."]}
            assert start in boundaries
            assert solve([babi.decode(ids[start:start + len(fact)])], story.question) == "kitchen"


def test_filler_drops_every_sentence_that_names_the_story_world():
    text = ("Then Daniel, tired, journeyed back to the Hallway! The KITCHEN was empty. She went to the park. "
            "Milk? A dog barked.\nMary's friend waited.\njohn went home")
    kept = [babi.decode(s) for s in babi.fact_free_sentences(text, 64)]
    # "mary's" is another word than "mary": it is hashed into a filler bucket, never the story word
    expected = ("she went to the park .", "a dog barked .", "mary's friend waited .")
    assert kept == [babi.decode(babi.encode(babi.words(t), 64)) for t in expected]
    entity_ids = {babi.WORD_IDS[w] for w in babi.ENTITIES}
    assert not entity_ids.intersection(i for s in babi.fact_free_sentences(text, 64) for i in s)


def _task(**kw) -> BabilongTask:
    return BabilongTask(BabilongParams(**{"context_length": 200, "n_facts": 4, "test_size": 20, **kw}))


@pytest.mark.parametrize("qa", babi.TASKS)
def test_samples_hold_every_fact_in_order_then_the_question(qa):
    task = _task(qa=qa)
    ids, labels = task.tensors("test")
    assert ids.shape == (20, 200) and labels.shape == (20, 200)
    for i, sample in enumerate(task.samples("test")):
        assert sample.input_ids == ids[i].tolist()
        for start, fact in zip(sample.fact_starts, sample.story.facts, strict=True):
            encoded = babi.encode(babi.words(fact), task.params.filler_vocab)
            assert sample.input_ids[start : start + len(encoded)] == encoded
        assert list(sample.fact_starts) == sorted(sample.fact_starts)
        text = babi.decode(sample.input_ids)
        assert text.endswith(f"<q> {sample.story.question} <a>")
        assert labels[i, -1] == babi.WORD_IDS[sample.story.answer] and (labels[i, :-1] == -100).all()
        # reading every story word of the context back gives the story's own facts, so the answer is right
        story_words = [w for w in text.split("<q>")[0].split() if not w.startswith("~")]
        sentences = [s.split() for s in " ".join(story_words).replace(" . ", " .\n").splitlines()]
        people = [[w for w in s if w in babi.PEOPLE] for s in sentences]
        found = [" ".join(s[s.index(p[0]):]) for s, p in zip(sentences, people, strict=True) if p]
        assert [babi.words(f) for f in found] == [babi.words(f) for f in sample.story.facts]
        assert solve(found, sample.story.question) == sample.story.answer


def test_filler_never_states_a_fact(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "The weather was mild. Mary went to the kitchen. Nobody came. The apple fell! Where is John? "
        "A long road led on. It rained in the garden."
    )
    pool = babi.fact_free_sentences(corpus.read_text(), 64)
    assert [babi.decode(s) for s in pool] == [babi.decode(babi.encode(babi.words(t), 64)) for t in
                                             ("the weather was mild .", "nobody came .", "a long road led on .")]
    task = _task(filler="file", filler_path=str(corpus), filler_vocab=64)
    entity_ids = {babi.WORD_IDS[w] for w in babi.ENTITIES}
    for sample in task.samples("test"):
        fact_positions = {
            p for start, fact in zip(sample.fact_starts, sample.story.facts, strict=True)
            for p in range(start, start + len(babi.words(fact)))
        }
        question = len(sample.input_ids) - len(babi.words(sample.story.question)) - 2
        stray = [p for p, t in enumerate(sample.input_ids[:question]) if t in entity_ids and p not in fact_positions]
        assert stray == []


def test_the_embedded_filler_is_fact_free_too():
    pool = babi.fact_free_sentences("mary went to the office . the day was long .", 8)
    assert len(pool) == 1
    entity_ids = {babi.WORD_IDS[w] for w in babi.ENTITIES}
    task = _task()
    for sample in task.samples("test"):
        n_entities = sum(t in entity_ids for t in sample.input_ids)
        in_facts = sum(w in babi.ENTITIES for f in sample.story.facts for w in babi.words(f))
        in_question = sum(w in babi.ENTITIES for w in babi.words(sample.story.question))
        assert n_entities == in_facts + in_question


def test_the_same_questions_at_every_length_and_seeds_decide_the_data():
    short, long = _task(context_length=100), _task(context_length=3000)
    assert [s.story for s in short.samples("test")] == [s.story for s in long.samples("test")]
    assert long.tensors("test")[0].shape == (20, 3000)
    assert torch.equal(_task().tensors("test")[0], _task().tensors("test")[0])
    assert not torch.equal(_task().tensors("test")[0], _task(data_seed=1).tensors("test")[0])
    assert [s.story for s in _task().samples("train", 5)] != [s.story for s in _task().samples("test", 5)]


def test_a_million_tokens():
    ids, labels = _task(context_length=1_000_000, test_size=1).tensors("test")
    assert ids.shape == (1, 1_000_000) and int(labels[0, -1]) >= babi.FILLER_BASE - len(babi.STORY_WORDS)


@pytest.mark.parametrize("bad, field", [
    ({"context_length": 1_000_001}, "context_length"),
    ({"context_length": 20, "n_facts": 4}, "context_length"),
    ({"qa": "qa3", "n_facts": 2}, "n_facts"),
    ({"filler": "file"}, "filler_path"),
    ({"source": "dataset"}, "dataset"),
    ({"qa": "qa9"}, "qa"),
])
def test_bad_params_name_the_field(bad, field):
    with pytest.raises(rmtzoo.ConfigError, match=field):
        rmtzoo.load_config({"backbone": {"kind": "transformer_xl", "vocab_size": 300}, "segment": {"length": 8},
                            "task": {"kind": "babilong", **bad}})


def test_real_rows_through_datasets(tmp_path):
    rows = [
        {"input": "Mary went to the hallway. The sky is blue. John moved to the office.",
         "question": "Where is Mary?", "target": "hallway"},
        {"input": "Sandra got the milk. Sandra went to the garden.", "question": "Where is the milk?",
         "target": "garden"},
    ]
    data = tmp_path / "qa1.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = _task(source="dataset", dataset=str(data), context_length=40, train_size=1, test_size=1)
    ids, labels = task.tensors("train")
    assert babi.decode(ids[0]).endswith("john moved to the office . <q> where is mary ? <a>")
    assert ids[0, 0] == babi.PAD_ID and labels[0, -1] == babi.WORD_IDS["hallway"]
    assert task.tensors("valid")[1][0, -1] == babi.WORD_IDS["garden"]
    too_short = _task(source="dataset", dataset=str(data), context_length=16, train_size=1)
    with pytest.raises(rmtzoo.ConfigError, match="context_length"):
        too_short.tensors("train")


def test_a_model_trains_and_evaluates_on_it(tmp_path):
    config = rmtzoo.load_config({
        "backbone": {"kind": "armt", "vocab_size": babi.vocab_size(8), "n_layer": 1, "n_head": 2, "d_model": 16,
                     "d_head": 8, "d_inner": 32, "d_key": 4, "dpfp_nu": 1},
        "memory": {"kind": "read_write", "num_tokens": 2}, "recurrence": {"kind": "armt", "bptt_depth": 2},
        "segment": {"length": 16},
        "task": {"kind": "babilong", "context_length": 48, "n_facts": 2, "filler_vocab": 8, "train_size": 16,
                 "valid_size": 4, "test_size": 4},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1}, "eval": {"every": 2, "batch_size": 4},
    })
    from rmtzoo.train import train

    metrics = train(config, tmp_path / "run", log=lambda *a, **k: None)
    assert 0.0 <= metrics["test/accuracy"] <= 1.0 and metrics["test/decoding"] == "teacher_forced"


def test_the_trainer_s_test_records_the_segment_count_the_curriculum_ended_on(tmp_path):
    """The final test runs at the curriculum's current stage, not the config's segment length: a run that
    never advanced is tested in 1 segment, and results.json says so."""
    config = rmtzoo.load_config({
        "backbone": {"kind": "transformer_xl", "vocab_size": babi.vocab_size(8), "n_layer": 1, "n_head": 2,
                     "d_model": 16, "d_head": 8, "d_inner": 32},
        "memory": {"kind": "read_write", "num_tokens": 2}, "recurrence": {"kind": "rmt"}, "segment": {"length": 16},
        "task": {"kind": "babilong", "context_length": 48, "n_facts": 2, "filler_vocab": 8, "train_size": 16,
                 "valid_size": 4, "test_size": 4},
        "train": {"steps": 2, "batch_size": 4, "log_every": 1, "curriculum": {"segments": [1, 3], "advance_at": 1.0}},
        "eval": {"every": 2, "batch_size": 4},
    })
    from rmtzoo.train import train

    metrics = train(config, tmp_path / "run", log=lambda *a, **k: None)
    assert metrics["test/segments"] == 1
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test/segments"] == 1


# -- the benchmark ---------------------------------------------------------------------------------------
def test_bench_run_babilong_smoke_sweeps_lengths_and_reports(tmp_path, capsys, monkeypatch):
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    from rmtzoo.cli import main

    monkeypatch.setenv("RMTZOO_CACHE", str(tmp_path / "cache"))
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["bench", "run", "babilong", "--preset", "smoke", "--results", str(results)]) == 0
    assert main(["bench", "report", "babilong", "--preset", "smoke", "--results", str(results),
                 "--reports", str(reports)]) == 0
    capsys.readouterr()
    records = [json.loads(p.read_text()) for p in (results / "babilong" / "smoke").glob("*.json")]
    sweeps = {r["labels"]["model"]: [p["length"] for p in r["analysis"]["lengths"]] for r in records}
    assert sweeps == {"RMT": [64, 128, 256], "ARMT": [64, 128, 256], "Tr-XL": [64, 128, 256],
                      "Full attention": [64, 128]}
    for r in records:
        for point in r["analysis"]["lengths"]:
            assert 0 <= point["accuracy"] <= 1 and point["n"] == min(64, 1024 // point["length"])
            assert point["tokens_per_s"] > 0 and point["peak_rss_mb"] > 0
    text = (reports / "smoke" / "babilong.md").read_text()
    assert "## Exact match against context length" in text and "| ARMT | 0." in text
    assert "evenly spaced over the test split" in text and "## Each run: the trainer's test" in text
    assert text.count("| RMT | 0 | 4 | 1 |") == 1  # smoke: 4 steps, never past 1 segment
    assert (reports / "smoke" / "babilong_lengths.png").read_bytes()[:4] == b"\x89PNG"


def test_the_small_and_paper_presets_reach_a_million_tokens():
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    from rmtzoo_benchmarks.babilong import cells, eval_lengths

    lengths = eval_lengths(256, 1_000_000)
    assert lengths[:3] == [256, 512, 1024] and lengths[-2:] == [524_288, 1_000_000]
    for preset in ("small", "paper"):
        up_to = {c.labels["model"]: c.labels["eval_up_to"] for c in cells(preset)}
        assert up_to["RMT"] == up_to["ARMT"] == up_to["Tr-XL"] == 1_000_000 > up_to["Full attention"]
        for cell in cells(preset):
            rmtzoo.load_config({**cell.config, "seed": 0})  # every cell validates
            if cell.labels["model"] != "Full attention":
                assert cell.config["train"]["curriculum"]["segments"][0] == 1


def test_the_evaluation_plan_keeps_enough_samples_and_flat_memory():
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    from rmtzoo_benchmarks.babilong import MAX_SAMPLES, PRESETS, eval_plan

    plan = {n: eval_plan(n, eval_tokens=262_144, min_samples=2, max_batch=8, full=False)
            for n in (256, 8192, 65_536, 1_000_000)}
    assert plan == {256: (MAX_SAMPLES, 8), 8192: (32, 8), 65_536: (4, 4), 1_000_000: (2, 2)}
    small = PRESETS["small"]  # at least 8 questions per seed at every length, a million tokens included
    assert [eval_plan(n, eval_tokens=small["eval_tokens"], min_samples=small["eval_min"], max_batch=8, full=False)
            for n in (4096, 32_768, 1_000_000)] == [(MAX_SAMPLES, 8), (8, 8), (8, 8)]
    # full attention holds [batch, heads, L, L] scores: its batch shrinks with the square of the length
    assert eval_plan(2048, eval_tokens=262_144, min_samples=2, max_batch=8, full=True) == (MAX_SAMPLES, 8)
    assert eval_plan(4096, eval_tokens=262_144, min_samples=2, max_batch=8, full=True) == (MAX_SAMPLES, 4)
    assert eval_plan(16_384, eval_tokens=262_144, min_samples=2, max_batch=8, full=True) == (16, 1)


@pytest.mark.parametrize("model", ["RMT", "ARMT", "Tr-XL"])
def test_a_batched_length_evaluation_scores_each_sample_as_alone(model):
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    from rmtzoo.train import build_task, prepare_model
    from rmtzoo_benchmarks.babilong import PRESETS, exact_match_at, model_blocks

    config = model_blocks(model, PRESETS["smoke"])
    config["backbone"]["vocab_size"] = babi.vocab_size(8)
    config |= {"segment": {"length": 16}, "seed": 0,
               "task": {"kind": "babilong", "context_length": 64, "n_facts": 1, "filler_vocab": 8, "test_size": 7}}
    config = rmtzoo.load_config(config)
    registry = rmtzoo.Registry()
    torch.manual_seed(0)
    task = build_task(config, registry).at_length(200)  # 13 segments, the last shorter
    net = prepare_model(config, task, registry).eval()
    ids, labels = task.tensors("test")
    with torch.no_grad():  # each sample alone, through the whole-sequence forward
        alone = [int(net(ids[i:i + 1]).logits[0, -1].argmax()) for i in range(7)]
    # labels that the model answers right exactly for samples 0, 2 and 4
    labels = labels.clone()
    labels[:, -1] = torch.tensor([p if i in (0, 2, 4) else (p + 1) % babi.vocab_size(8) for i, p in enumerate(alone)])
    task.tensors = lambda split, n=None, indices=None: (ids[:n], labels[:n]) if indices is None else (ids[indices], labels[indices])
    for batch in (1, 3, 7):
        point = exact_match_at(net, task, n=7, batch_size=batch, progress=False)
        assert point["n"] == 7 and point["batch_size"] == batch and point["length"] == 200
        assert point["accuracy"] == pytest.approx(3 / 7)
        assert point["tokens_per_s"] > 0 and point["peak_rss_mb"] > 0
    point = exact_match_at(net, task, n=3, batch_size=2, progress=False, indices=[1, 2, 4])  # right on 2 and 4
    assert point["n"] == 3 and point["indices"] == [1, 2, 4] and point["accuracy"] == pytest.approx(2 / 3)


def test_the_sweep_asks_questions_spread_over_the_split_at_every_length(monkeypatch):
    """Not the split's first n (whose answers repeat: the first five of small's test split are "hallway"):
    evenly spaced indices, the same for every model and seed, with at least 8 questions per length."""
    pytest.importorskip("rmtzoo_benchmarks", reason="pip install -e benchmarks")
    from rmtzoo.train import build_task
    from rmtzoo_benchmarks import babilong as spec

    asked = {}

    def fake(model, task, *, n, batch_size=None, progress=True, indices=None):
        asked[(model.name, task.sequence_length)] = indices
        return {"length": task.sequence_length, "n": n}

    monkeypatch.setattr(spec, "exact_match_at", fake)
    for cell in spec.cells("small"):
        task = build_task(rmtzoo.load_config({**cell.config, "seed": 0}), rmtzoo.Registry())
        stub = type("Stub", (), {"segment_length": 64, "name": cell.labels["model"]})()
        spec.analyze(stub, task, labels=dict(cell.labels), path=None)
    test = task.at_length(256)
    assert {length for model, length in asked if model == "RMT"} == set(spec.eval_lengths(256, 1_000_000))
    for (model, length), indices in asked.items():
        assert indices is not None and len(indices) >= 8 and len(set(indices)) == len(indices)
        assert indices[-1] >= 150  # reaching the end of the 200-question split, not its start
        assert indices == asked[("RMT", length)]  # every model asked the same questions
        answers = {s.answer for s in test.samples("test", indices=indices)}
        assert len(answers) >= 3, (model, length, answers)
    assert len(asked[("RMT", 1_000_000)]) >= 8


def test_samples_picked_by_index_are_the_split_s_samples_at_those_indices():
    """A check over questions spread through the split (not its first n) sees the same samples the split has."""
    from rmtzoo.tasks.babilong import BabilongParams, BabilongTask

    task = BabilongTask(BabilongParams(qa="qa1", n_facts=1, context_length=128, test_size=40))
    every = task.samples("test")
    picked = task.samples("test", indices=[0, 13, 39])
    assert [s.input_ids for s in picked] == [every[i].input_ids for i in (0, 13, 39)]
    assert [s.answer for s in picked] == [every[i].answer for i in (0, 13, 39)]
