"""eval's statistics, by tables: counts, Fisher's exact test, the recommendation, ties and warnings."""

import pytest

from verifier.eval.findings import analyse
from verifier.eval.stats import FAIL, PASS, UNKNOWN, Counts, Outcome, fisher_greater, seeds_to_separate


@pytest.mark.parametrize("a_pass, a_fail, b_pass, b_fail, p", [
    # A with no fails: p = P(all k fails fall in B) = C(n_B, k) / C(N, k), by hand
    (12, 0, 7, 5, 792 / 42504),  # C(12,5)/C(24,5); scipy's fisher_exact(alternative="greater") agrees: 0.018634
    (24, 0, 18, 6, 134596 / 12271512),  # C(24,6)/C(48,6)
    (3, 0, 0, 3, 1 / 20),
    (4, 1, 2, 3, 0.261905),  # C(5,4)C(5,2)/C(10,6) + C(5,5)C(5,1)/C(10,6) = (50 + 5)/210
    (6, 0, 6, 0, 1.0),
    (5, 1, 6, 0, 1.0),
    (0, 0, 4, 1, 1.0),  # nothing known on one side: no evidence
])
def test_fisher_one_sided(a_pass, a_fail, b_pass, b_fail, p):
    assert fisher_greater(a_pass, a_fail, b_pass, b_fail) == pytest.approx(p, abs=1e-6)


def test_seeds_to_separate_scales_the_counts():
    # 3 seeds, 12/12 vs 10/12: p = 0.24; the same rates with more seeds separate, and one seed fewer does not
    a, b = Counts(12, 0), Counts(10, 2)
    assert fisher_greater(12, 0, 10, 2) > 0.05
    needed = seeds_to_separate(a, b, 3)
    assert needed is not None and 3 < needed <= 9

    def p_at(seeds):
        return fisher_greater(*(round(x * seeds / 3) for x in (12, 0, 10, 2)))

    assert p_at(needed) < 0.05 and p_at(needed - 1) >= 0.05
    assert seeds_to_separate(Counts(6, 0), Counts(6, 0), 3) is None  # equal rates: nothing separates them


def sweep(table: dict[int, dict[str, list[str]]], fmt=lambda seed: "K") -> list[Outcome]:
    """{epoch: {check: [result per seed]}} -> outcomes, one per (epoch, seed)."""
    out = []
    for epoch, checks in table.items():
        seeds = len(next(iter(checks.values())))
        for i in range(seeds):
            out.append(Outcome(epoch, fmt(i), 42 + i, {name: results[i] for name, results in checks.items()}))
    return out


P, F, U = PASS, FAIL, UNKNOWN
CASES = [
    # (table, recommended, tied)
    ({5: {"long hair": [P, F, P]}, 10: {"long hair": [P, P, P]}, 20: {"long hair": [P, P, P]}}, 10, [5, 10, 20]),
    ({5: {"x": [F, F, F, F]}, 10: {"x": [P, P, P, P]}}, 10, [10]),  # 4/4 vs 0/4: p = 0.014
    ({5: {"x": [U, U, U]}, 10: {"x": [P, F, F]}}, 10, [10]),  # nothing known at ep5: not in the running
    ({0: {"x": [P, P, P]}, 5: {"x": [P, F, F]}}, 5, [5]),  # the baseline is never recommended
    ({0: {"x": [U]}}, None, []),
]


@pytest.mark.parametrize("table, recommended, tied", CASES)
def test_recommendation_and_ties(table, recommended, tied):
    found = analyse(sweep(table), {"x", "long hair"})
    assert found.recommended == recommended and found.tied == tied


def test_unknown_is_counted_never_scored():
    found = analyse(sweep({10: {"x": [P, U, U, F]}}))
    e = found.epochs[10]
    assert (e.checks["x"].passed, e.checks["x"].failed, e.checks["x"].unknown, e.score) == (1, 1, 2, 0.5)


def test_the_article_sweep_warns_about_the_rebound_the_hidden_format_and_the_baseline():
    # ep10 perfect; ep125: the trigger-only K prompt loses long hair and grows an ahoge, N looks fine
    k125 = {"long hair": [F, F, F], "ahoge": [F, F, F], "blonde hair": [P, P, P]}
    outcomes = sweep({0: {"long hair": [P, P, P], "ahoge": [P, P, P], "blonde hair": [F, F, F]},
                      10: {"long hair": [P] * 3, "ahoge": [P] * 3, "blonde hair": [P] * 3}})
    outcomes += sweep({10: {"long hair": [P] * 3, "ahoge": [P] * 3, "blonde hair": [P] * 3}}, lambda i: "N")
    outcomes += sweep({125: k125})
    outcomes += sweep({125: {"long hair": [P] * 3, "ahoge": [P] * 3, "blonde hair": [P] * 3}}, lambda i: "N")
    found = analyse(outcomes, {"long hair", "blonde hair"})
    assert found.recommended == 10 and found.tied == [10]
    decline, hidden, baseline = found.warnings
    assert decline.startswith("ep125 falls below ep10 (overtraining?): 12/18 vs 18/18 checks pass, p = 0.00")
    assert "fell: long hair 3/6 vs 6/6, ahoge 3/6 vs 6/6" in decline
    assert hidden.startswith("ep125: format N passes 9/9 checks but K 3/9 (p = 0.00") and "N hides what K shows" in hidden
    assert baseline.startswith("the baseline already shows long hair: 3/3 pass without the LoRA vs 6/6 at ep10")
    assert "ahoge" not in baseline  # a must-not tag is not something a LoRA earns


def test_a_check_no_epoch_passes_and_one_never_determined():
    found = analyse(sweep({5: {"hair intakes": [F, F], "facing": [U, U], "x": [P, P]},
                           10: {"hair intakes": [F, F], "facing": [U, U], "x": [P, P]}}))
    assert "no epoch passes hair intakes: 0 of 4 known checks (baseline included)" in found.warnings
    assert "facing was never determined (4 checks unknown): not scored" in found.warnings


def test_recommendation_line_names_the_test_counts_and_seeds():
    found = analyse(sweep({5: {"x": [P, F, P]}, 10: {"x": [P, P, P]}, 20: {"x": [P, P, P]}}))
    line = found.recommendation()
    assert line.startswith("recommended: ep10 (3/3 known checks pass, 100%); tied with it: ep5–20 (Fisher's exact")
    assert "with 3 seed(s) these differences are not significant" in line
    detail = found.details()[0]
    assert detail.startswith("ep5 vs ep10: 2/3 vs 3/3 checks pass, p = 0.5") and "would separate them" in detail


def test_a_tied_set_with_a_gap_is_listed_not_spanned():
    # ep10 clearly worse than ep20 (0/4 vs 4/4), ep5 and ep50 not: the tie is ep5, ep20, ep50, not "ep5–50"
    found = analyse(sweep({5: {"x": [P, P, P, F]}, 10: {"x": [F, F, F, F]}, 20: {"x": [P, P, P, P]},
                           50: {"x": [P, P, P, F]}}))
    assert found.tied == [5, 20, 50]
    assert "tied with it: ep5, ep20, ep50 (" in found.recommendation()
    spanned = analyse(sweep({5: {"x": [F] * 4}, 10: {"x": [P, P, P, F]}, 20: {"x": [P] * 4}, 50: {"x": [P] * 4}}))
    assert spanned.tied == [10, 20, 50] and "tied with it: ep10–50 (" in spanned.recommendation()
