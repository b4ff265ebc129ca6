"""Labeling-budget optimizer: how many labels of which tier to buy for each class.

The package: ``tiers`` (labeling tiers and per-class values read from text or files),
``curves`` (each class's predicted accuracy against its label count and noise rate),
``problem`` (the budget question and its checks), ``solver`` (candidate purchases per class
and the exact knapsack; its docstring describes the solver), ``plans`` (plans, the
optimizer and the simple strategies), ``answer`` (budget sweeps, costs to reach a
target, measured vs predicted, JSON), ``context`` (a run's curves and images per class, and
the problem on them) and ``simulation`` (the plans ``--simulate`` trains, and measured beside
predicted once trained; the training itself is left to the caller, so nothing here imports
jax), ``design`` (the ``--design`` mix grid: space-filling per-class counts and noise, trained
as its own run for a cross-class model); ``errors`` holds BudgetError. Every public name is
importable from this package.

Predictive model
----------------
Each labeling tier t has a price per label p_t and an expected label-noise rate eps_t.
Buying n_kt labels of class k from tier t gives class k a label count and an effective
noise rate

    n_k = sum_t n_kt,        eps_k = sum_t n_kt * eps_t / n_k.

Class k's predicted accuracy depends on its own (n_k, eps_k) only:

    acc_k(n_k, eps_k) = V_k(n_k) - s_k * eps_k,      V_k(n) = a_k - b_k * n^(-c_k),

where V_k is the class's volume fit (accuracy against its per-class label count, measured
without noise; the fit may instead pick the saturating form a_k - b_k * exp(-n / c_k)) and
s_k its noise slope (accuracy lost per unit noise rate, measured on the full training set).
When the run has a joint fit of count and noise (a noise x size cross grid), its
prediction replaces this sum, so the noise slope may change with n_k. A negative slope is
taken as zero (the model never rewards noise), and predictions are clipped to [0, 1].
A label of class k from tier t costs p_t times the class's price multiplier (1 unless
given); a plan's cost is the sum over classes and tiers.

Overall accuracy is the mean of the per-class accuracies (the accuracy on a test set with
equal numbers of each class). The objective is that mean (default), a weighted mean, or the
worst class's accuracy (then, among plans with the best worst class, the best mean).

Intervals come from the fits' bootstrap samples: each resampled set of a class's fit
parameters gives one prediction, and an interval is the 2.5-97.5 percentile range (samples
are paired across classes by index for the overall accuracy). They carry the uncertainty
of the fits, not the spread between two trainings of the same plan.

Limits:

- Other classes' labels matter too: a class's errors are other classes' false positives,
  and a noisy label of one class is a wrong example of another. The model ignores that.
- The fits are valid only within the measured range. A plan never gives a class fewer
  labels than the smallest per-class count the run measured (a budget too small for that
  is an error that states the minimum), nor more than the largest measured count times
  ``extrapolate`` (1 by default: no extrapolation in volume), nor more than the images
  available. A simple strategy stops buying for a class at that ceiling; a strategy that
  leaves a class below the floor has no prediction at that budget. A noise rate above the
  largest measured one extends the fitted line, with a warning.
- The fits come from class-balanced grids: every class had the same count. A plan that
  gives one class far fewer labels than the others moves the decision boundary against it,
  which the per-class curves cannot see (the starved class is measured well below its
  prediction). ``max_ratio`` keeps the optimized plan's largest per-class count within that
  multiple of its smallest; a simple strategy outside it is not adopted as the optimized
  plan (it is still shown), and a class with few images available holds every other class
  to ``max_ratio`` times its count.
- Noise is measured with the run's noise model (the fitted one when a run has several)
  and a tier's rate is read in its units. Under the study's shuffle protocol a rate r
  permutes the labels of a fraction r of the records, so some keep their true class and
  only about r * (C - 1) / C end up wrong; if a tier's rate is its fraction of wrong
  labels, the model predicts only about (C - 1) / C of the accuracy that noise costs (90%
  with 10 classes). ``--simulate`` trains the plans, with per-class noise that makes
  exactly the tier's fraction of labels wrong, and shows measured beside predicted
  accuracy.
"""

from __future__ import annotations

from labelsim.analysis.budget.answer import (
    BudgetResult,
    answer_payload,
    cost_curves,
    cost_to_reach,
    measured_vs_predicted,
    plan_budget,
    plan_to_dict,
    result_to_dict,
    save_result,
    sweep_budgets,
)
from labelsim.analysis.budget.context import (
    RunContext,
    load_context,
    run_problem,
    training_class_counts,
    wrong_label_scale,
)
from labelsim.analysis.budget.curves import (
    ClassCurve,
    Predictor,
    curves_from_fits,
    power_law_curve,
)
from labelsim.analysis.budget.design import (
    DESIGN_DIR,
    DESIGN_FILE,
    Design,
    check_design_args,
    design_note,
    design_points,
    design_region,
    design_specs,
    load_design,
    prepare_design,
    unit_design,
)
from labelsim.analysis.budget.errors import BudgetError
from labelsim.analysis.budget.plans import (
    OPTIMIZED,
    Optimizer,
    Plan,
    build_optimizer,
    equal_counts,
    evaluate_plan,
    objective_value,
    optimize,
    plan_cost,
    pooled_counts,
    predict_counts,
    simple_strategies,
    strategy_names,
)
from labelsim.analysis.budget.problem import (
    DEFAULT_LEVELS,
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_RATIO,
    OBJECTIVES,
    BudgetProblem,
    check_affordable,
    check_problem,
    measure_title,
    minimum_cost,
)
from labelsim.analysis.budget.simulation import (
    SIMULATION_DIR,
    Simulation,
    compare_simulation,
    simulation_verdict,
    custom_specs,
    per_class_accuracy,
    prepare_simulation,
    read_measured,
    replica_specs,
    simulation_plans,
)
from labelsim.analysis.budget.solver import (
    ClassOptions,
    CostGrid,
    Table,
    backtrack,
    class_options,
    composition_frontier,
    cost_grid,
    knapsack_table,
    label_step,
    option_cells,
    ratio_windows,
    solve,
    solve_windows,
    worst_level,
)
from labelsim.analysis.budget.tiers import (
    Tier,
    check_tier,
    check_tiers,
    parse_class_values,
    parse_tier,
)

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_MAX_CELLS",
    "DEFAULT_MAX_RATIO",
    "DESIGN_DIR",
    "DESIGN_FILE",
    "OBJECTIVES",
    "OPTIMIZED",
    "SIMULATION_DIR",
    "BudgetError",
    "BudgetProblem",
    "BudgetResult",
    "ClassCurve",
    "ClassOptions",
    "CostGrid",
    "Design",
    "Optimizer",
    "Plan",
    "Predictor",
    "RunContext",
    "Simulation",
    "Table",
    "Tier",
    "answer_payload",
    "backtrack",
    "build_optimizer",
    "check_affordable",
    "check_design_args",
    "check_problem",
    "check_tier",
    "check_tiers",
    "class_options",
    "compare_simulation",
    "simulation_verdict",
    "composition_frontier",
    "cost_curves",
    "cost_grid",
    "cost_to_reach",
    "curves_from_fits",
    "custom_specs",
    "design_note",
    "design_points",
    "design_region",
    "design_specs",
    "equal_counts",
    "evaluate_plan",
    "knapsack_table",
    "label_step",
    "load_context",
    "load_design",
    "measure_title",
    "measured_vs_predicted",
    "minimum_cost",
    "objective_value",
    "optimize",
    "option_cells",
    "parse_class_values",
    "parse_tier",
    "per_class_accuracy",
    "plan_budget",
    "plan_cost",
    "plan_to_dict",
    "pooled_counts",
    "power_law_curve",
    "predict_counts",
    "prepare_design",
    "prepare_simulation",
    "ratio_windows",
    "read_measured",
    "replica_specs",
    "result_to_dict",
    "run_problem",
    "save_result",
    "simple_strategies",
    "simulation_plans",
    "solve",
    "solve_windows",
    "strategy_names",
    "sweep_budgets",
    "training_class_counts",
    "unit_design",
    "worst_level",
    "wrong_label_scale",
]
