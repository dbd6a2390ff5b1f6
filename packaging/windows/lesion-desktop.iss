; Inno Setup 6 script for the Windows installers of Lesion Desktop, one per edition (docs/packaging.md):
;   standard  PyTorch on the CPU (PyPI's Windows wheels), with retraining      -> lesion-desktop-standard-VERSION-setup.exe
;   cuda      PyTorch with NVIDIA's CUDA libraries (GPU when present, else CPU) -> lesion-desktop-cuda-VERSION-setup.exe
;             plus lesion-desktop-cuda-VERSION-setup-1.bin, -2.bin...: too large for one file, keep them together
;   lite      ONNX Runtime on the CPU, no PyTorch, no retraining                -> lesion-desktop-lite-VERSION-setup.exe
; Built by .github/workflows/windows-installer.yml after `pyinstaller build.spec`, from the repository root:
;   iscc /DEdition=standard /DAppVersion=VERSION /DSourceDir=..\..\dist\lesion-desktop packaging\windows\lesion-desktop.iss
; AppVersion has no default: the workflow reads it from lesion_desktop/__init__.py, the one place it is written.
; Signing: with /DSignToolName=NAME and ISCC's /SNAME="signtool.exe sign ... $f", the program files, setup and
; uninstaller are signed; without them nothing is (the workflow does this when a certificate is configured).
; The standard and cuda editions are the same application (one AppId: installing one replaces the other);
; the lite edition is another and can be installed beside them.
; Keep this file ASCII (tests/test_packaging.py checks it).

#ifndef AppVersion
  #error Pass /DAppVersion=... (the version in lesion_desktop/__init__.py)
#endif
#ifndef Edition
  #error Pass /DEdition=standard, /DEdition=cuda or /DEdition=lite
#endif

#define FullGuid "2F4A9D63-8B1E-4C0D-A7E5-1D9C3B6F8E20"
#define LiteGuid "6C1B7F0E-3C52-4F7E-9B0C-5E4E6D2A9A11"
#if Edition == "lite"
  #define AppName "Lesion Desktop Lite"
  #define AppGuid LiteGuid
  #define OtherGuid FullGuid
  #define OtherName "Lesion Desktop"
  #define Bundle "lesion-desktop-lite"
  #define EditionText "CPU only (ONNX Runtime), no retraining"
#elif Edition == "standard"
  #define AppName "Lesion Desktop"
  #define AppGuid FullGuid
  #define OtherGuid LiteGuid
  #define OtherName "Lesion Desktop Lite"
  #define Bundle "lesion-desktop"
  #define EditionText "PyTorch on the CPU, with retraining"
#elif Edition == "cuda"
  #define AppName "Lesion Desktop"
  #define AppGuid FullGuid
  #define OtherGuid LiteGuid
  #define OtherName "Lesion Desktop Lite"
  #define Bundle "lesion-desktop"
  #define EditionText "NVIDIA GPU (CUDA) when present, otherwise CPU, with retraining"
#else
  #error Edition must be standard, cuda or lite
#endif
#ifndef SourceDir
  #define SourceDir AddBackslash("..\..\dist") + Bundle
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist\installer"
#endif
#ifdef SignToolName
  #define SignFlag " signonce"
#else
  #define SignFlag ""
#endif
; The program's data folder, as lesion_desktop/paths.py finds it on Windows (platformdirs, APP_NAME, not roaming).
#define DataFolder "LesionDesktop"

[Setup]
AppId={{{#AppGuid}}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion} ({#Edition})
AppPublisher=Lesion Desktop authors
AppComments=Skin-lesion decision support for dermoscopy images ({#EditionText}). Decision support, not a diagnosis.
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per machine (Program Files) with administrator rights, or per user (AppData\Local\Programs) without: the
; dialog offers both, and /ALLUSERS or /CURRENTUSER choose on the command line. Managed clinic PCs often block
; programs under the user's profile, so all users is what the dialog proposes to an administrator.
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=lesion-desktop-{#Edition}-{#AppVersion}-setup
SetupIconFile=..\..\resources\icons\lesion-desktop.ico
UninstallDisplayIcon={app}\lesion-desktop.exe
; The licence page: the models' CC BY-NC 4.0 terms and what they mean for a clinic, the MIT licence of the code,
; and where the third-party licences are.
LicenseFile=license.txt
Compression=lzma2/fast
SolidCompression=no
#if Edition == "cuda"
; NVIDIA's libraries make this edition's compressed data larger than the 2.1 GB one setup file can hold:
; setup.exe plus numbered .bin slices, which must stay in the same folder.
DiskSpanning=yes
DiskSliceSize=max
#endif
ChangesEnvironment=yes
WizardStyle=modern
#ifdef SignToolName
SignTool={#SignToolName}
SignedUninstaller=yes
#endif

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the command line (lesion-desktop-cli) to PATH"; GroupDescription: "Command line:"; Flags: unchecked

[InstallDelete]
; An update or a change of edition replaces the whole bundle: no library of the previous one may stay behind.
Type: filesandordirs; Name: "{app}\_internal"
Type: filesandordirs; Name: "{app}\licenses"

[Files]
Source: "{#SourceDir}\lesion-desktop.exe"; DestDir: "{app}"; Flags: ignoreversion{#SignFlag}
Source: "{#SourceDir}\lesion-desktop-cli.exe"; DestDir: "{app}"; Flags: ignoreversion{#SignFlag}
Source: "{#SourceDir}\*"; Excludes: "\lesion-desktop.exe,\lesion-desktop-cli.exe"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\lesion-desktop.exe"; Comment: "Decision support, not a diagnosis"
Name: "{group}\Licences"; Filename: "{app}\licenses"; Comment: "Licences of Lesion Desktop, its models and the software it contains"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\lesion-desktop.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\lesion-desktop.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
Type: filesandordirs; Name: "{app}\_internal"
Type: filesandordirs; Name: "{app}\licenses"

[Code]
// ---- PATH entries (pure functions: tests/test_packaging.py compiles this block with Free Pascal) ----
// PATH is a list of folders separated by ';'. An entry matches a folder when they are the same text ignoring
// letter case, surrounding spaces and quotes and trailing backslashes: never a substring, so removing
// C:\Programs\Lesion Desktop leaves C:\Programs\Lesion Desktop Lite alone.
function NormalisedEntry(S: String): String;
begin
  Result := Trim(S);
  if (Length(Result) >= 2) and (Copy(Result, 1, 1) = '"') and (Copy(Result, Length(Result), 1) = '"') then
    Result := Trim(Copy(Result, 2, Length(Result) - 2));
  while (Length(Result) > 3) and (Copy(Result, Length(Result), 1) = '\') do
    Result := Copy(Result, 1, Length(Result) - 1);
  Result := Uppercase(Result);
end;

// Paths without the entries that match Dir; every other entry (empty ones too) kept as it was, in order.
function PathWithout(Paths, Dir: String): String;
var
  Rest, Entry, Target: String;
  P: Integer;
  Done, First: Boolean;
begin
  Result := '';
  Target := NormalisedEntry(Dir);
  Rest := Paths;
  Done := False;
  First := True;
  while not Done do
  begin
    P := Pos(';', Rest);
    if P = 0 then
    begin
      Entry := Rest;
      Done := True;
    end
    else
    begin
      Entry := Copy(Rest, 1, P - 1);
      Rest := Copy(Rest, P + 1, Length(Rest));
    end;
    if (Target = '') or (NormalisedEntry(Entry) <> Target) then
    begin
      if not First then
        Result := Result + ';';
      Result := Result + Entry;
      First := False;
    end;
  end;
end;

function PathHas(Paths, Dir: String): Boolean;
begin
  Result := PathWithout(Paths, Dir) <> Paths;
end;

// Paths with Dir appended, unless an entry already matches it.
function PathWith(Paths, Dir: String): String;
begin
  if PathHas(Paths, Dir) then
    Result := Paths
  else if Trim(Paths) = '' then
    Result := Dir
  else if Copy(Paths, Length(Paths), 1) = ';' then
    Result := Paths + Dir
  else
    Result := Paths + ';' + Dir;
end;
// ---- end of PATH entries ----

function PathRoot(): Integer;
begin
  if IsAdminInstallMode then Result := HKEY_LOCAL_MACHINE else Result := HKEY_CURRENT_USER;
end;

function PathKey(): String;
begin
  if IsAdminInstallMode then Result := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
  else Result := 'Environment';
end;

procedure CurStepChanged(CurStep: TSetupStep);
var Paths: String;
begin
  if (CurStep <> ssPostInstall) or not WizardIsTaskSelected('addtopath') then exit;
  if not RegQueryStringValue(PathRoot(), PathKey(), 'Path', Paths) then Paths := '';
  if not PathHas(Paths, ExpandConstant('{app}')) then
    RegWriteExpandStringValue(PathRoot(), PathKey(), 'Path', PathWith(Paths, ExpandConstant('{app}')));
end;

// ---- Patient data at uninstall ----
var
  RemoveData: Boolean;

function DataPath(): String;
begin
  // LESION_DESKTOP_HOME moves all of it (lesion_desktop/paths.py); otherwise data, settings, history, installed
  // models and logs are all in %LOCALAPPDATA%\LesionDesktop.
  Result := GetEnv('LESION_DESKTOP_HOME');
  if Result = '' then Result := ExpandConstant('{localappdata}\{#DataFolder}');
end;

function OtherEditionInstalled(): Boolean;
var Key: String;
begin
  Key := 'Software\Microsoft\Windows\CurrentVersion\Uninstall\{{#OtherGuid}}_is1';
  Result := RegKeyExists(HKEY_LOCAL_MACHINE_64, Key) or RegKeyExists(HKEY_LOCAL_MACHINE_32, Key)
    or RegKeyExists(HKEY_CURRENT_USER, Key);
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var Paths: String;
begin
  if CurUninstallStep = usUninstall then
  begin
    RemoveData := False;
    if not DirExists(DataPath()) then exit;
    if OtherEditionInstalled() then
      SuppressibleMsgBox('The patient data (history of analyses with their images, settings, installed models, logs) '
        + 'in' + #13#10 + DataPath() + #13#10 + 'are kept: {#OtherName}, still installed, uses them too.',
        mbInformation, MB_OK, IDOK)
    else
      // Default (and the answer of a silent uninstall): keep.
      RemoveData := SuppressibleMsgBox('Also delete the patient data of this Windows user?' + #13#10#13#10
        + 'The history of analyses with their images, the settings, installed (retrained) models and the logs are in'
        + #13#10 + DataPath() + #13#10#13#10
        + 'No: keep them (a later installation finds them again). Yes: delete them now, for good. '
        + 'Other Windows users'' data, in their own profiles, are not touched.',
        mbConfirmation, MB_YESNO or MB_DEFBUTTON2, IDNO) = IDYES;
  end
  else if CurUninstallStep = usPostUninstall then
  begin
    if RegQueryStringValue(PathRoot(), PathKey(), 'Path', Paths) and PathHas(Paths, ExpandConstant('{app}')) then
      RegWriteExpandStringValue(PathRoot(), PathKey(), 'Path', PathWithout(Paths, ExpandConstant('{app}')));
    if RemoveData and not DelTree(DataPath(), True, True, True) then
      SuppressibleMsgBox('Could not delete all of ' + DataPath() + '; delete what is left by hand.',
        mbError, MB_OK, IDOK);
  end;
end;
