"""Release hygiene that Linux can check: the licence and its metadata, one version, the Windows installer's PATH
code, the licence texts a bundle ships, the release constraints, and the frozen bundles' lack of network clients.

What only Windows can show (the installer running, signing, the windowed program) is the Windows workflow's
smoke test (.github/workflows/windows-installer.yml).
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import lesion_desktop

ROOT = Path(__file__).resolve().parents[1]
ISS = ROOT / "packaging" / "windows" / "lesion-desktop.iss"


@pytest.fixture(scope="module")
def packaging_tools() -> object:
    """packaging/ is scripts, not a package (it would shadow the `packaging` distribution): import by path."""
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        yield (importlib.import_module("third_party_licenses"), importlib.import_module("check_constraints"))
    finally:
        sys.path.remove(str(ROOT / "packaging"))


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory: pytest.TempPathFactory) -> metadata.PackageMetadata:
    """The metadata setuptools writes for the wheel, from pyproject.toml as it is."""
    out = tmp_path_factory.mktemp("metadata")
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    r = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    dist_info = out / r.stdout.strip().splitlines()[-1]
    return metadata.PathDistribution(dist_info).metadata


def test_the_code_is_mit_licensed_in_a_license_file_that_the_package_metadata_names(wheel_metadata):
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert isinstance(project["license"], str), "PEP 639: an SPDX expression, not a table"
    # the wheel carries the default models, whose weights are CC BY-NC 4.0: the expression says both
    assert wheel_metadata["License-Expression"] == "MIT AND CC-BY-NC-4.0"
    assert {"LICENSE", "THIRD_PARTY_NOTICES.md"} <= set(wheel_metadata.get_all("License-File") or [])


def test_the_version_is_written_once_and_everything_takes_it_from_there(wheel_metadata):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert wheel_metadata["Version"] == lesion_desktop.__version__
    # build.spec, the installer scripts, the build scripts, the Debian files and the workflow must not repeat it
    files = [ROOT / "build.spec", ISS, *(ROOT / "scripts").glob("*.sh"), *(ROOT / "packaging" / "linux").iterdir(),
             *(ROOT / ".github" / "workflows").glob("*.yml")]
    literal = re.compile(rf"(?<![\d.]){re.escape(lesion_desktop.__version__)}(?![\d.])")
    repeats = [str(f.relative_to(ROOT)) for f in files if f.is_file() and literal.search(f.read_text(errors="replace"))]
    assert repeats == []
    assert re.search(r"#ifndef AppVersion\s+#error", ISS.read_text()), "the installer must not default a version"


def test_the_installer_script_and_its_licence_page_are_ascii_and_carry_both_licences():
    page = (ROOT / "packaging" / "windows" / "license.txt").read_text(encoding="utf-8")
    for f in (ISS, ROOT / "packaging" / "windows" / "license.txt"):
        assert f.read_bytes().isascii(), f"{f.name}: Inno Setup reads it as ANSI"
    assert "CC BY-NC 4.0" in page and "What this means for a clinic" in page
    mit = " ".join((ROOT / "LICENSE").read_text().split()[2:])  # after "MIT License"
    assert mit in " ".join(page.split()), "the licence page must carry the MIT text as in LICENSE"


# ---- the installer's PATH code, compiled from the .iss with Free Pascal ----

def _path_program(tmp_path: Path) -> Path:
    fpc = shutil.which("fpc")
    if fpc is None:
        raise AssertionError("Free Pascal is missing (apt install fp-compiler; .ci/run installs it): it compiles "
                             "the installer's PATH functions")
    iss = ISS.read_text()
    block = iss[iss.index("// ---- PATH entries"):iss.index("// ---- end of PATH entries ----")]
    source = tmp_path / "pathentries.pas"
    source.write_text("program pathentries;\n{$mode delphi}{$H+}\nuses SysUtils;\n" + block + textwrap.dedent("""
        var Line, Op, Paths, Dir: String; P: Integer;
        begin
          while not EOF(Input) do
          begin
            ReadLn(Line);
            P := Pos(#9, Line); Op := Copy(Line, 1, P - 1); Line := Copy(Line, P + 1, Length(Line));
            P := Pos(#9, Line); Paths := Copy(Line, 1, P - 1); Dir := Copy(Line, P + 1, Length(Line));
            if Op = 'without' then WriteLn(PathWithout(Paths, Dir))
            else if Op = 'with' then WriteLn(PathWith(Paths, Dir))
            else WriteLn(PathHas(Paths, Dir));
          end;
        end.
        """))
    r = subprocess.run([fpc, "-O1", "-v0", f"-FE{tmp_path}", str(source)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp_path / "pathentries"


def _run_path(program: Path, cases: list[tuple[str, str, str]]) -> list[str]:
    stdin = "".join(f"{op}\t{paths}\t{folder}\n" for op, paths, folder in cases)
    r = subprocess.run([str(program)], input=stdin, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


FULL = r"C:\Program Files\Lesion Desktop"
LITE = r"C:\Program Files\Lesion Desktop Lite"


@pytest.mark.parametrize(("paths", "removed", "left"), [
    # both editions installed, either order: uninstalling one keeps the other's folder
    (rf"C:\Windows;{LITE};{FULL}", FULL, rf"C:\Windows;{LITE}"),
    (rf"C:\Windows;{FULL};{LITE}", FULL, rf"C:\Windows;{LITE}"),
    (rf"{LITE};C:\Windows;{FULL}", LITE, rf"C:\Windows;{FULL}"),
    # the same folder written differently: case, trailing backslash, quotes, spaces
    (r"C:\Windows;c:\program files\lesion desktop\;C:\Tools", FULL, r"C:\Windows;C:\Tools"),
    (rf'"{FULL}";C:\Tools', FULL, r"C:\Tools"),
    (rf"C:\Tools; {FULL} ", FULL, r"C:\Tools"),
    # added twice by hand: both go; only entry; absent: the text is left exactly as it was
    (rf"{FULL};C:\Tools;{FULL}", FULL, r"C:\Tools"),
    (FULL, FULL, ""),
    (rf"C:\Windows;;{LITE};", FULL, rf"C:\Windows;;{LITE};"),
    (r"C:\Windows;C:\Program Files\Lesion Desktop2", FULL, r"C:\Windows;C:\Program Files\Lesion Desktop2"),
])
def test_uninstall_removes_exactly_its_own_path_entry(tmp_path, paths, removed, left):
    program = _path_program(tmp_path)
    assert _run_path(program, [("without", paths, removed)]) == [left]


def test_install_adds_its_path_entry_once(tmp_path):
    program = _path_program(tmp_path)
    got = _run_path(program, [
        ("with", r"C:\Windows", FULL),
        ("with", "", FULL),
        ("with", "C:\\Windows;", FULL),
        ("with", rf"C:\Windows;{LITE}", FULL),  # the other edition's longer name is not this folder
        ("with", rf"C:\Windows;{FULL.upper()}\\", FULL),  # already there, written differently
        ("has", rf"C:\Windows;{LITE}", FULL),
    ])
    assert got == [rf"C:\Windows;{FULL}", FULL, rf"C:\Windows;{FULL}", rf"C:\Windows;{LITE};{FULL}",
                   rf"C:\Windows;{FULL.upper()}\\", "FALSE"]


# Inno Setup's functions, stubbed to print what the installer would do: the whole [Code] section compiles
# with Free Pascal, and the install/uninstall steps run against a PATH holding both editions.
_INNO_STUBS = r"""program codecheck;
{$mode delphi}{$H+}
uses SysUtils;
type TSetupStep = (ssInstall, ssPostInstall, ssDone);
  TUninstallStep = (usAppMutexCheck, usUninstall, usPostUninstall, usDone);
  TMsgBoxType = (mbInformation, mbConfirmation, mbError, mbCriticalError);
const HKEY_LOCAL_MACHINE = 1; HKEY_CURRENT_USER = 2; HKEY_LOCAL_MACHINE_64 = 3; HKEY_LOCAL_MACHINE_32 = 4;
  MB_OK = 0; MB_YESNO = 4; MB_DEFBUTTON2 = 256; IDOK = 1; IDYES = 6; IDNO = 7;
function IsAdminInstallMode: Boolean; begin Result := False; end;
function RegQueryStringValue(Root: Integer; Key, Name: String; var Value: String): Boolean;
begin Value := GetEnvironmentVariable('STUB_PATH'); Result := True; end;
function RegWriteExpandStringValue(Root: Integer; Key, Name, Value: String): Boolean;
begin WriteLn('PATH=', Value); Result := True; end;
function ExpandConstant(S: String): String;
begin
  if S = '{app}' then Result := GetEnvironmentVariable('STUB_APP')
  else Result := 'C:\Users\u\AppData\Local\LesionDesktop';
end;
function WizardIsTaskSelected(S: String): Boolean; begin Result := S = 'addtopath'; end;
function GetEnv(S: String): String; begin Result := ''; end;
function RegKeyExists(Root: Integer; Key: String): Boolean;
begin Result := GetEnvironmentVariable('STUB_OTHER_INSTALLED') = '1'; end;
function DirExists(S: String): Boolean; begin Result := True; end;
function SuppressibleMsgBox(Text: String; Typ: TMsgBoxType; Buttons, Default: Integer): Integer;
begin
  WriteLn('ASK default=', Default = IDNO, ' ', StringReplace(Text, #13#10, ' ', [rfReplaceAll]));
  if GetEnvironmentVariable('STUB_ANSWER') = 'yes' then Result := IDYES else Result := Default;
end;
function DelTree(Path: String; IsDir, DeleteFiles, DeleteSubdirsAlso: Boolean): Boolean;
begin WriteLn('DELETE ', Path); Result := True; end;
"""


@pytest.fixture(scope="module")
def installer_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fpc = shutil.which("fpc")
    if fpc is None:
        raise AssertionError("Free Pascal is missing (apt install fp-compiler; .ci/run installs it): it compiles "
                             "the installer's [Code] section")
    iss = ISS.read_text()
    defines = {"OtherGuid": "6C1B7F0E-3C52-4F7E-9B0C-5E4E6D2A9A11", "OtherName": "Lesion Desktop Lite",
               "DataFolder": "LesionDesktop"}
    code = re.sub(r"\{#(\w+)\}", lambda m: defines[m.group(1)], iss[iss.index("[Code]") + len("[Code]"):])
    folder = tmp_path_factory.mktemp("inno")
    (folder / "codecheck.pas").write_text(_INNO_STUBS + code + textwrap.dedent("""
        begin
          if ParamStr(1) = 'install' then CurStepChanged(ssPostInstall)
          else begin CurUninstallStepChanged(usUninstall); CurUninstallStepChanged(usPostUninstall); end;
        end.
        """))
    r = subprocess.run([fpc, "-v0", f"-FE{folder}", str(folder / "codecheck.pas")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return folder / "codecheck"


def _installer(program: Path, step: str, **env: str) -> list[str]:
    r = subprocess.run([str(program), step], capture_output=True, text=True, timeout=60,
                       env={"STUB_APP": FULL, **{f"STUB_{k.upper()}": v for k, v in env.items()}})
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_uninstall_keeps_the_patient_data_unless_asked_and_says_where_they_are(installer_code):
    out = _installer(installer_code, "uninstall", path=rf"C:\Windows;{FULL};{LITE}")
    asked = [line for line in out if line.startswith("ASK")]
    assert len(asked) == 1 and asked[0].startswith("ASK default=TRUE")  # "No" is the default
    assert r"C:\Users\u\AppData\Local\LesionDesktop" in asked[0]
    assert not any(line.startswith("DELETE") for line in out)
    assert out[-1] == rf"PATH=C:\Windows;{LITE}"
    yes = _installer(installer_code, "uninstall", path=FULL, answer="yes")
    assert r"DELETE C:\Users\u\AppData\Local\LesionDesktop" in yes


def test_uninstall_never_offers_to_delete_data_the_other_installed_edition_uses(installer_code):
    out = _installer(installer_code, "uninstall", path=FULL, other_installed="1", answer="yes")
    assert not any(line.startswith("DELETE") for line in out)
    assert any("are kept" in line and "Lesion Desktop Lite" in line for line in out)


def test_install_adds_the_folder_to_path_once(installer_code):
    assert _installer(installer_code, "install", path=r"C:\Windows") == [rf"PATH=C:\Windows;{FULL}"]
    assert _installer(installer_code, "install", path=rf"C:\Windows;{FULL}") == []


# ---- the licence texts a bundle ships ----

def test_a_bundle_gets_each_collected_package_s_own_licence_texts(tmp_path, packaging_tools):
    tpl, _ = packaging_tools
    import cv2
    import numpy
    import PySide6

    sources = [numpy.__file__, PySide6.__file__, cv2.__file__, str(tmp_path / "cudnn64_9.dll")]
    (tmp_path / "cudnn64_9.dll").write_bytes(b"")  # as PyTorch's Windows CUDA wheels carry it, with no NVIDIA text
    out = tmp_path / "licenses"
    found = tpl.write_bundle_licences(sources, out)
    assert {"numpy", "pyside6-essentials", "opencv-python-headless"} <= set(found.distributions)
    assert (out / "numpy" / "LICENSE.txt").read_text().startswith("Copyright")
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in (out / "pyside6-essentials" / "LGPL-3.0.txt").read_text()
    assert "GNU GENERAL PUBLIC LICENSE" in (out / "pyside6-essentials" / "GPL-3.0.txt").read_text()
    assert "Apache License" in (out / "opencv-python-headless" / "LICENSE-3RD-PARTY.txt").read_text()  # OpenCV
    assert "NVIDIA" in (out / "nvidia" / "CUDA-SDK-License.txt").read_text()
    assert (out / "LICENSE-lesion-desktop.txt").read_text() == (ROOT / "LICENSE").read_text()
    index = (out / "INDEX.txt").read_text()
    assert f"numpy {numpy.__version__}: " in index and f"PySide6_Essentials {PySide6.__version__}: LGPL" in index


def test_a_bundle_without_nvidia_libraries_gets_no_nvidia_notice(tmp_path, packaging_tools):
    tpl, _ = packaging_tools
    import numpy

    tpl.write_bundle_licences([numpy.__file__], tmp_path / "licenses")
    assert not (tmp_path / "licenses" / "nvidia").exists()


def test_the_build_stops_on_a_package_that_ships_no_licence_text(tmp_path, packaging_tools):
    tpl, _ = packaging_tools
    site = tmp_path / "site"
    (site / "quiet_pkg").mkdir(parents=True)
    (site / "quiet_pkg" / "__init__.py").write_text("")
    info = site / "quiet_pkg-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quiet-pkg\nVersion: 1.2\nLicense: Proprietary\n")
    (info / "RECORD").write_text("quiet_pkg/__init__.py,,\nquiet_pkg-1.2.dist-info/METADATA,,\n")
    dist = metadata.PathDistribution(info)
    found = tpl.owners([site / "quiet_pkg" / "__init__.py"], tpl.file_index([dist]))
    assert list(found.distributions) == ["quiet-pkg"]
    with pytest.raises(tpl.MissingLicenceError, match="quiet-pkg 1.2"):
        tpl.write_licences(found.distributions, tmp_path / "out")


# ---- release constraints ----

def test_every_dependency_is_pinned_for_release_builds_within_its_range(packaging_tools):
    from packaging.requirements import Requirement

    _, cc = packaging_tools
    pins = cc.read_pins(ROOT / "packaging" / "constraints-release.txt")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["build"]]]
    problems = [f"{r}: pinned {pins.get(cc.canonical(r.name))}" for r in requirements
                if cc.canonical(r.name) not in pins or pins[cc.canonical(r.name)] not in r.specifier]
    assert problems == []
    assert "pyinstaller-hooks-contrib" in pins and "pyinstaller" in pins


def test_constraint_drift_is_reported_except_for_a_local_build_label(packaging_tools):
    _, cc = packaging_tools
    pins = {"torch": "2.14.1", "numpy": "2.4.6", "nvidia-cublas": "13.1.1.3"}
    assert cc.drift(pins, {"torch": "2.14.1+cu130", "numpy": "2.4.6"}) == []  # nvidia-* not installed: ignored
    assert cc.drift(pins, {"torch": "2.15.0", "numpy": "2.4.6"}) == ["torch: installed 2.15.0, pinned 2.14.1"]


def test_the_windows_workflow_pins_its_runner_inno_setup_and_package_versions():
    import yaml

    wf = (ROOT / ".github" / "workflows" / "windows-installer.yml").read_text()
    job = yaml.safe_load(wf)["jobs"]["installer"]
    assert "latest" not in job["runs-on"] and "windows-2025" in job["runs-on"]
    assert re.search(r'INNO_SETUP_VERSION: "\d+\.\d+\.\d+"', wf) and "choco install innosetup --version" in wf
    assert "-c packaging/constraints-release.txt" in wf
    assert {e["edition"] for e in job["strategy"]["matrix"]["include"]} == {"standard", "cuda", "lite"}


# ---- no network client in the frozen bundles ----

def test_the_model_code_works_without_the_network_clients_the_bundles_leave_out():
    """build.spec excludes huggingface_hub (which timm imports when it can) and other network clients; the same
    list made unimportable here, the model code still builds and runs an EfficientNet-Lite0 through timm."""
    spec = (ROOT / "build.spec").read_text()
    listed = re.search(r"NETWORK_CLIENTS = \[(.*?)\]", spec, re.S)
    assert listed is not None
    clients = re.findall(r'"([\w.]+)"', listed.group(1))
    assert "huggingface_hub" in clients and "*NETWORK_CLIENTS" in spec
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {clients!r}
        tried = []
        class Excluded(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    tried.append(name)
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None
        sys.meta_path.insert(0, Excluded())
        for m in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
            del sys.modules[m]
        import torch
        import lesion_desktop.cli  # noqa: F401
        from lesion_desktop.registry import build_model
        from timm.models import _hub
        model = build_model("efficientnet_lite0").eval()
        with torch.inference_mode():
            out = model(torch.zeros(1, 3, 224, 224))
        assert tuple(out.shape) == (1, 7), out.shape
        assert _hub._has_hf_hub is False and "huggingface_hub" in tried, tried
        print("ok", sorted(set(tried)))
        """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok")
