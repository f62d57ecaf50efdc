"""The library stands on its own: nothing under jaxmtf/ imports the launchers, and a non-editable install
runs a small sweep from outside the checkout (the configs are the package's, jaxmtf/configs)."""
import ast
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imported_modules(path):
    """Every module name an `import` or `from ... import` in `path` names, and importlib's string arguments."""
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.JoinedStr):  # f"launch.configs.{algo}": its leading constant
                argument = argument.values[0] if argument.values else argument
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                yield argument.value


def test_no_module_of_the_library_imports_launch():
    offenders = []
    for folder, _, files in os.walk(os.path.join(ROOT, "jaxmtf")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                offenders += [f"{os.path.relpath(path, ROOT)}: {module}" for module in imported_modules(path)
                              if module == "launch" or module.startswith("launch.")]
    assert offenders == []


def test_the_check_sees_an_import_of_launch(tmp_path):
    """The scan above is not vacuous: each way of importing launch is found."""
    path = tmp_path / "m.py"
    path.write_text("import launch.x\nfrom launch.configs import td3\nimport importlib\n"
                    "importlib.import_module(f'launch.configs.{algo}')\n")
    assert [m for m in imported_modules(str(path)) if m.startswith("launch")] == [
        "launch.x", "launch.configs", "launch.configs."]


def test_an_installed_copy_runs_a_sweep_outside_the_checkout(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--target", str(site), ROOT], check=True, timeout=600)
    assert not (site / "launch").exists()  # the launchers are not part of the package
    script = textwrap.dedent(f"""
        import importlib.util, os, sys
        # Only the installed copy: the checkout (an editable install's path entry, pytest's) is off the path.
        sys.path = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != {ROOT!r}]
        import jaxmtf
        assert jaxmtf.__file__.startswith({str(site)!r}), jaxmtf.__file__
        assert importlib.util.find_spec("launch") is None, "the checkout's launch/ is importable"
        import ml_collections
        from jaxmtf.workflows import sweep
        from jaxmtf.configs import integrated_rl, td3_bc
        assert td3_bc.get_config().agent.alpha == 2.5 and integrated_rl.get_config().agent.discount == 0.9
        config = ml_collections.ConfigDict(dict(
            algorithms="td3_bc", datasets={{"random": "collect:random"}},
            collect={{"num_users": 8, "eval_users": 8, "seed": 0}},
            train={{"num_seeds": 1, "num_updates": 4, "chunk_size": 2, "batch_size": 8, "eval_every": 0,
                   "checkpoint_every": 2}},
            hidden_width=8, agent_overrides={{}}, grids={{}}))
        index = sweep.run_sweep(config, "sweep")
        assert index["cells"]["td3_bc-random"]["status"] == sweep.DONE, index
        print("ran", index["cells"]["td3_bc-random"]["step"])
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ran 4" in result.stdout


def test_every_algorithm_has_one_consistent_field_list():
    """An agent's default config (jaxmtf/configs/ALGO.py), its field specs (CONFIG_FIELDS) and its sweepable
    hparams (HPARAMS) name the same fields: a default without a spec, a spec without a default or a
    sweepable name that is no field fails here, not in a user's run."""
    import importlib

    from jaxmtf import agents

    for algo, module_name in agents.ALGORITHMS.items():
        module = importlib.import_module(f"jaxmtf.agents.{module_name}")
        defaults = importlib.import_module(f"jaxmtf.configs.{algo}").get_config()
        assert defaults.algo == algo
        fields = set(module.CONFIG_FIELDS)
        assert set(defaults.agent) == fields, (algo, set(defaults.agent) ^ fields)
        assert set(module.HPARAMS) <= fields, (algo, set(module.HPARAMS) - fields)
