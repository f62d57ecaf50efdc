"""Off-policy evaluation: FQE, the importance-sampling family, doubly robust and state-marginalised IS.

    episodes.py       the flat dataset as padded [episode, step] arrays
    importance.py     trajectory / per-decision IS and their weighted forms
    doubly_robust.py  DR and weighted DR with a Q model
    marginal.py       state-marginalised IS over k-means cells
    fqe.py            Fitted Q Evaluation, run by the training driver
    ncis.py           normalised capped IS of the return (IntegratedRL-MTF's offline metric)
    gauc.py           MTF-GAUC: per-user AUC of the fused score against valid consumption, in the simulator
    model_based.py    a dynamics ensemble trained by the driver, rolled out with the target
    extra_rows.py     the rows of those three, appended by run.py
    bootstrap.py      percentile intervals over episodes, vmapped
    targets.py        the policies to evaluate: run directories, static vectors, named
    scoring.py        estimators against the truth (DOPE's metrics, SCOPE-RL's top-k) and conservative selection
    support.py        the share of a target's actions outside the behaviour's support
    summary.py        the console table and warnings of `launch.ope`
    config.py         the OPE config's fields, validated before anything is built
    run.py            all of it on all policies: what `launch.ope` runs
"""
