"""The paper's list notation and the work-unit cost model (000 eq 10)."""

import pytest

from keras_multilevel.optimizers import CycleSteps, work_units

# Paper 000, Table 1 (co-centric circles) set-ups and their U_c.
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
    [  # Table 2 of paper 000 (8 levels); the paper prints these to two decimals.
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
