from collections import Counter
from pathlib import Path

import pytest

from dfscan.scanner.errors import DataError
from dfscan.train.data.folder import Sample
from dfscan.train.data.split import (
    check_split,
    describe_split,
    make_split,
    read_split,
    split_hash,
    write_split,
)


def samples_for(n_real=100, gens=("a", "b"), n_fake=50, group_size=1):
    out = [Sample(f"real/{i}.png", 0, "real", f"r{i // group_size}") for i in range(n_real)]
    for g in gens:
        out += [Sample(f"{g}/{i}.png", 1, g, f"{g}{i // group_size}") for i in range(n_fake)]
    return out


def test_split_is_80_10_10_per_generator():
    samples = samples_for()
    assignment = make_split(samples, seed=0)
    for gen, total in (("real", 100), ("a", 50), ("b", 50)):
        c = Counter(assignment[s.path] for s in samples if s.generator == gen)
        assert c["train"] == pytest.approx(0.8 * total, abs=1)
        assert c["val"] == pytest.approx(0.1 * total, abs=1)
        assert c["test"] == pytest.approx(0.1 * total, abs=1)


def test_split_is_deterministic_and_seeded():
    samples = samples_for()
    assert make_split(samples, seed=3) == make_split(list(reversed(samples)), seed=3)
    assert make_split(samples, seed=3) != make_split(samples, seed=4)


def test_groups_never_cross_splits():
    samples = samples_for(n_real=120, n_fake=60, group_size=4)
    # plus groups spanning real and fake (a fake made from a real crop)
    samples += [Sample(f"a/x{i}.png", 1, "a", f"r{i}") for i in range(30)]
    assignment = make_split(samples, seed=1)
    by_group: dict[str, set[str]] = {}
    for s in samples:
        by_group.setdefault(s.group, set()).add(assignment[s.path])
    assert all(len(splits) == 1 for splits in by_group.values())
    assert set(assignment.values()) == {"train", "val", "test"}


def test_roundtrip_and_hash(tmp_path: Path):
    samples = samples_for(20, ("a",), 20)
    assignment = make_split(samples, seed=0)
    path = tmp_path / "split.csv"
    write_split(path, samples, assignment)
    samples2, assignment2 = read_split(path)
    assert samples2 == samples and assignment2 == assignment
    assert split_hash(assignment) == split_hash(dict(reversed(list(assignment.items()))))
    changed = dict(
        assignment, **{samples[0].path: "test" if assignment[samples[0].path] != "test" else "val"}
    )
    assert split_hash(changed) != split_hash(assignment)


def test_real_sources_travel_in_the_split_file_and_old_files_still_read(tmp_path: Path):
    samples = [Sample(f"real/cam/{i}.png", 0, "real", f"r{i}", "cam") for i in range(10)]
    samples += [Sample(f"a/{i}.png", 1, "a", f"a{i}") for i in range(10)]
    assignment = make_split(samples, seed=0)
    path = tmp_path / "split.csv"
    write_split(path, samples, assignment)
    assert read_split(path) == (samples, assignment)
    legacy = tmp_path / "old.csv"  # written before the source column existed
    lines = path.read_text().splitlines()
    cells = [line.split(",") for line in lines]
    legacy.write_text("\n".join(",".join(c[:4] + c[5:]) for c in cells) + "\n")
    old_samples, old_assignment = read_split(legacy)
    assert old_assignment == assignment
    assert old_samples == [Sample(s.path, s.label, s.generator, s.group) for s in samples]


def test_too_few_images_is_a_clear_error():
    samples = samples_for(n_real=3, gens=("a",), n_fake=3)
    with pytest.raises(DataError, match="too few images"):
        check_split(samples, make_split(samples, seed=0))


def test_foreign_csv_is_refused(tmp_path: Path):
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a dfscan split"):
        read_split(path)


def many_small_generators():
    """90 reals and 23 fakes over 13 generator folders of 1–4 images (issue 11)."""
    sizes = (4, 3, 1, 2, 1, 1, 2, 1, 1, 4, 1, 1, 1)
    assert sum(sizes) == 23
    out = [Sample(f"real/{i}.png", 0, "real", f"real/{i}") for i in range(90)]
    for g, n in enumerate(sizes):
        out += [Sample(f"gen{g}/{i}.png", 1, f"gen{g}", f"gen{g}/{i}") for i in range(n)]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_many_small_generator_folders_split_by_class_first(seed):
    samples = many_small_generators()
    assignment = make_split(samples, seed=seed)
    check_split(samples, assignment)  # every split has real and fake images
    fakes = Counter(assignment[s.path] for s in samples if s.label == 1)
    reals = Counter(assignment[s.path] for s in samples if s.label == 0)
    for counts, total in ((fakes, 23), (reals, 90)):
        assert counts["train"] == pytest.approx(0.8 * total, abs=1)
        assert counts["val"] == pytest.approx(0.1 * total, abs=1)
        assert counts["test"] == pytest.approx(0.1 * total, abs=1)
    line = describe_split(samples, assignment)
    assert f"fake {fakes['train']}/{fakes['val']}/{fakes['test']}" in line
    assert "of 13 generators in every split" in line and "too small" in line


def test_zero_fraction_split_gets_nothing():
    samples = many_small_generators()
    assignment = make_split(samples, seed=0, fractions=(0.9, 0.1, 0.0))
    assert "test" not in assignment.values()
    assert {s.label for s in samples if assignment[s.path] == "val"} == {0, 1}
