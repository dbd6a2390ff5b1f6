; Inno Setup 6 script for the Windows installer of Lesion Desktop (one per flavour).
; Built by .github/workflows/windows-installer.yml after `pyinstaller build.spec`:
;   iscc /DFlavour=full /DAppVersion=0.1.0 /DSourceDir=..\..\dist\lesion-desktop /DOutputDir=..\..\dist packaging\windows\lesion-desktop.iss
;   iscc /DFlavour=lite ... /DSourceDir=..\..\dist\lesion-desktop-lite ...
; The bundle holds lesion-desktop.exe (GUI, no console window) and lesion-desktop-cli.exe (the same program
; for `classify` in a console); see build.spec and docs/packaging.md.

#ifndef Flavour
  #define Flavour "full"
#endif
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef SourceDir
  #if Flavour == "lite"
    #define SourceDir "..\..\dist\lesion-desktop-lite"
  #else
    #define SourceDir "..\..\dist\lesion-desktop"
  #endif
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif

#if Flavour == "lite"
  #define AppName "Lesion Desktop Lite"
  #define AppIdGuid "{{6C1B7F0E-3C52-4F7E-9B0C-5E4E6D2A9A11}"
  #define Edition "CPU edition (ONNX Runtime), classification only"
#else
  #define AppName "Lesion Desktop"
  #define AppIdGuid "{{2F4A9D63-8B1E-4C0D-A7E5-1D9C3B6F8E20}"
  #define Edition "GPU (CUDA) and CPU edition, with retraining"
#endif

[Setup]
AppId={#AppIdGuid}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Lesion Desktop maintainers
AppComments=Skin-lesion decision support for dermoscopy images ({#Edition}). Decision support, not a diagnosis.
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Clinic PCs are often locked down: install for the current user unless the person chooses all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=lesion-desktop-{#Flavour}-{#AppVersion}-setup
SetupIconFile=..\..\resources\icons\lesion-desktop.ico
UninstallDisplayIcon={app}\lesion-desktop.exe
LicenseFile=license.txt
Compression=lzma2/fast
SolidCompression=no
; The full flavour's CUDA libraries make the bundle about 4-5 GB: more than one setup file can hold.
#if Flavour == "full"
DiskSpanning=yes
DiskSliceSize=max
#endif
ChangesEnvironment=yes
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the command line (lesion-desktop-cli) to PATH"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\lesion-desktop.exe"; Comment: "Decision support, not a diagnosis"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\lesion-desktop.exe"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}')) and not IsAdminInstallMode
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; ValueName: "Path"; ValueData: "{olddata};{app}"; Tasks: addtopath; Check: NeedsAddPath(ExpandConstant('{app}')) and IsAdminInstallMode

[Run]
Filename: "{app}\lesion-desktop.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; User data (history, settings, retrained models, logs) lives in the user's AppData and is kept.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"

[Code]
function PathKey(): String;
begin
  if IsAdminInstallMode then Result := 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment'
  else Result := 'Environment';
end;

function PathRoot(): Integer;
begin
  if IsAdminInstallMode then Result := HKEY_LOCAL_MACHINE else Result := HKEY_CURRENT_USER;
end;

function NeedsAddPath(Dir: String): Boolean;
var Paths: String;
begin
  if not RegQueryStringValue(PathRoot(), PathKey(), 'Path', Paths) then begin Result := True; exit; end;
  Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') = 0;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var Paths, Dir: String; P: Integer;
begin
  if CurUninstallStep <> usPostUninstall then exit;
  if not RegQueryStringValue(PathRoot(), PathKey(), 'Path', Paths) then exit;
  Dir := ';' + ExpandConstant('{app}');
  P := Pos(Uppercase(Dir), Uppercase(Paths));
  if P > 0 then begin
    Delete(Paths, P, Length(Dir));
    RegWriteExpandStringValue(PathRoot(), PathKey(), 'Path', Paths);
  end;
end;
