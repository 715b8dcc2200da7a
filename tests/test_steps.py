"""The paper's list notation and the work-unit cost model (Gaedke-Merzhäuser et al., 2021, eq 10)."""

import pytest

from keras_multilevel.optimizers import CycleSteps, work_units
from keras_multilevel.optimizers.scheme import minibatch_layout

# Gaedke-Merzhäuser et al. (2021, Table 1) (co-centric circles) set-ups and their U_c.
TABLE_1 = [
    (1, "[{1}]", 1.00),
    (2, "[(1),{2}]", 3.00),
    (4, "[(1),1,2,{2}]", 5.00),
    (6, "[(1),1,1,2,2,{2}]", 5.25),
    (8, "[(1),1,1,1,2,2,2,{2}]", 5.1875),
]


def depth_costs(levels):
    return [2.0**-i for i in range(levels)]


@pytest.mark.parametrize("levels, notation, cycle_cost", TABLE_1)
def test_default_steps_are_the_papers_and_cost_table_1(levels, notation, cycle_cost):
    steps = CycleSteps.default(levels)
    assert str(steps) == notation
    assert CycleSteps.parse(notation, levels) == steps
    assert work_units(steps, depth_costs(levels)) == pytest.approx(cycle_cost)


@pytest.mark.parametrize(
    "notation, cycle_cost",
    [  # Table 2 of Gaedke-Merzhäuser et al. (2021) (8 levels); the paper prints these to two decimals.
        ("[1,1,1,1,1,1,1,{5}]", 5.99),
        ("[1,1,1,1,1,1,1,{10}]", 6.03),
        ("[1,1,1,1,2,2,2,{2}]", 6.19),
        ("[(1),1,1,1,2,2,2,{2}]", 5.19),
    ],
)
def test_table_2_cycle_costs(notation, cycle_cost):
    assert work_units(CycleSteps.parse(notation, 8), depth_costs(8)) == pytest.approx(cycle_cost, abs=0.005)


def test_parse_reads_each_kind_of_entry():
    steps = CycleSteps.parse("[ (1), 3, 2/5, {4} ]", 4)
    assert steps.pre == (1, 3, 2)
    assert steps.post == (0, 3, 5)
    assert steps.coarsest == 4
    assert CycleSteps.parse(str(steps), 4) == steps


def test_parse_reads_a_python_list():
    assert CycleSteps.parse([(1, 0), 2, 3], 3) == CycleSteps.parse("[(1),2,{3}]", 3)


@pytest.mark.parametrize(
    "spec, levels, message",
    [
        ("[(1),{2}]", 3, "describes 2 levels but the optimizer has levels=3"),
        ("(1),{2}", 2, "must be a bracketed list"),
        ("[(1),x,{2}]", 3, "Cannot read entry 'x'"),
        ("[{1},2]", 2, "exactly the last entry is the coarsest"),
        ("[1,2]", 2, "exactly the last entry is the coarsest"),
        ("[1,{0}]", 2, "integers >= 1"),
        ([(1, 0), (1, 1)], 2, "must be an integer >= 1"),
        ([-1, 2], 2, "integers >= 0"),
        ([(1, 2, 3), 2], 2, "must be an int or a pair"),
        (3, 1, "must be None, a string"),
    ],
)
def test_bad_step_specifications(spec, levels, message):
    with pytest.raises(ValueError, match=message):
        CycleSteps.parse(spec, levels)


def test_fas_work_units_of_the_paper_example():
    """Ponce et al. (2022, §8): 2 levels, 2 steps everywhere, m = 2 minibatches, costs 1 and 1/4. The paper counts
    4.5 (smoothing) + 2.5 (tau) = 7; the cycle saves the coarse gradient on the first minibatch,
    which serves both tau and the first coarse step: 7 - 1/4."""
    steps = CycleSteps.parse("[2,{2}]", 2)
    assert work_units(steps, [1.0, 0.25], minibatch_layout(steps, 2, fresh_batches=True)) == pytest.approx(7.0 - 0.25)


@pytest.mark.parametrize("notation, levels", [("[(1),{2}]", 2), ("[2,1/3,(0),{4}]", 4)])
def test_one_minibatch_is_000_eq_10(notation, levels):
    """With m = 1 the count is U_c = mu_0 c_L + sum (mu_1 + mu_2 + 1) c_l (Gaedke-Merzhäuser et al., 2021, eq 10)."""
    steps = CycleSteps.parse(notation, levels)
    costs = depth_costs(levels)
    expected = steps.coarsest * costs[-1] + sum((d + u + 1) * c for d, u, c in zip(steps.pre, steps.post, costs))
    assert work_units(steps, costs, minibatch_layout(steps, 1, fresh_batches=False)) == pytest.approx(expected)


def test_without_coupling_no_tau_gradients_are_counted():
    """gamma = 0: one coarse gradient per level for its first step, no fine gradient for tau."""
    steps = CycleSteps.parse("[(1),(0),{3}]", 3)
    costs = [1.0, 0.5, 0.25]
    # level 0: initial gradient (serves its one step) + one coarse gradient for level 1;
    # level 1: no steps, one coarse gradient for level 2; level 2: 3 steps, the first given.
    layout = minibatch_layout(steps, 4, fresh_batches=True)
    assert work_units(steps, costs, layout, coupled=False) == pytest.approx(1.0 + 0.5 + 0.25 + 2 * 0.25)


def test_minibatch_layout_of_a_fas_cycle():
    """Ponce et al. (2022, §6.1.1): one fresh minibatch per fine smoothing step, m fresh ones per restriction,
    on which the coarser level then smooths."""
    steps = CycleSteps.parse("[2,1/2,{3}]", 3)
    layout = minibatch_layout(steps, 2, fresh_batches=True)
    assert layout.count == 8
    assert layout.smoothing == ((0, 1, 2, 3), (4, 5), (6, 7))
    assert layout.tau == ((4, 5), (6, 7))
    assert not layout.shared(0)
    no_fine_steps = minibatch_layout(CycleSteps.parse("[(0),{1}]", 2), 3, fresh_batches=True)
    assert no_fine_steps.count == 3 and no_fine_steps.shared(0)  # the reported loss is on a tau minibatch
    shared = minibatch_layout(steps, 2, fresh_batches=False)
    assert shared.count == 2 and shared.smoothing == ((0, 1),) * 3 and shared.tau == ((0, 1),) * 2
    assert minibatch_layout(CycleSteps.parse("[{3}]", 1), 2, fresh_batches=True).smoothing == ((0, 1, 2),)
