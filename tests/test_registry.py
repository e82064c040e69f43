import sys
import textwrap

import pytest

from simcrop_bench import registry
from simcrop_bench.errors import RegistryError

from .conftest import run_cli

PLUGIN = textwrap.dedent(
    '''
    """A user's method living outside the repository."""
    from simcrop_bench.api import Method
    from simcrop_bench.api import MethodConfig
    from simcrop_bench.registry import register_method

    @register_method("{name}")
    class Mine(Method):
        """My own pretraining method."""
        kind = "self-supervised"
        Config = MethodConfig
        pretrains = False
    '''
)


def test_builtin_files_are_discovered():
    registry.discover()
    assert registry.get_method("scratch").kind == "no-pretraining"
    assert registry.get_task("lung_seg").dataset == "luna16"
    names = [name for name, *_ in registry.entries("tasks")]
    assert "lung_seg" in names


def test_plugin_file_outside_repository(tmp_path):
    plugin = tmp_path / "my_method.py"
    plugin.write_text(PLUGIN.format(name="plugin_file_method"))
    registry.discover([str(plugin)])
    cls = registry.get_method("plugin_file_method")
    assert cls.description() == "My own pretraining method."
    origin = dict((n, o) for n, _, _, o in registry.entries("methods"))["plugin_file_method"]
    assert origin == str(plugin)


def test_plugin_folder_and_module_name(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "a.py").write_text(PLUGIN.format(name="plugin_folder_method"))
    registry.discover([str(folder)])
    assert registry.get_method("plugin_folder_method")
    (tmp_path / "my_plugin_module.py").write_text(PLUGIN.format(name="plugin_module_method"))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.discover(["my_plugin_module"])
    assert registry.get_method("plugin_module_method")


def test_unknown_name_suggests_closest():
    registry.discover()
    with pytest.raises(RegistryError, match=r"unknown method 'scrach'; did you mean scratch\?"):
        registry.get_method("scrach")
    with pytest.raises(RegistryError, match="unknown task 'zzz'; registered: .*lung_seg"):
        registry.get_task("zzz")


def test_broken_plugin_is_one_clear_error(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("raise ValueError('boom')\n")
    with pytest.raises(RegistryError, match=r"broken.py: failed to import: ValueError: boom"):
        registry.discover([str(bad)])
    with pytest.raises(RegistryError, match="file not found"):
        registry.discover([str(tmp_path / "missing.py")])


def test_entry_point_group(tmp_path):
    # A pip-installed package advertises its module in the simcrop_bench.methods group.
    (tmp_path / "ep_method_pkg.py").write_text(PLUGIN.format(name="entry_point_method"))
    dist = tmp_path / "ep_method_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-method-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[simcrop_bench.methods]\nmine = ep_method_pkg\n")
    result = run_cli("list", "methods", env={"PYTHONPATH": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "entry_point_method" in result.stdout and "scratch" in result.stdout


def test_cli_plugin_and_env_variable(tmp_path):
    plugin = tmp_path / "env_method.py"
    plugin.write_text(PLUGIN.format(name="env_plugin_method"))
    by_flag = run_cli("list", "methods", "--plugin", str(plugin), env={"COLUMNS": "200"})
    assert "env_plugin_method" in by_flag.stdout, by_flag.stderr
    by_env = run_cli("list", "methods", env={"SIMCROP_BENCH_PLUGINS": str(plugin), "COLUMNS": "200"})
    assert "env_plugin_method" in by_env.stdout, by_env.stderr


def test_cli_start_does_not_import_heavy_libraries():
    code = (
        "import sys; from simcrop_bench import cli; "
        "sys.argv=['simcrop-bench','list','tasks']; "
        "import contextlib\n"
        "try:\n cli.main()\nexcept SystemExit: pass\n"
        "heavy=[m for m in ('torch','monai','transformers','pandas') if m in sys.modules]; print('HEAVY', heavy)"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
