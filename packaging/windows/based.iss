; Inno Setup script for Based (Windows x64). Build the PyInstaller bundle first (dist\Based\),
; then:  iscc /DAppVersion=0.1.0 packaging\windows\based.iss   -> dist\Based-0.1.0-windows-x64-setup.exe
; Installs per user by default (no admin rights needed), adds a Start-menu shortcut to the
; windowed based-gui.exe and an optional desktop shortcut; `based.exe` is the console CLI.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Based"
#define Root "..\.."

[Setup]
AppId={{6B0B7E0C-5A3C-4C55-9E0B-2B1A6E1D5A11}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Based developers
AppComments=A base language model next to its instruct twin, offline.
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#Root}\dist
OutputBaseFilename=Based-{#AppVersion}-windows-x64-setup
SetupIconFile={#Root}\resources\icons\based.ico
UninstallDisplayIcon={app}\based-gui.exe
LicenseFile={#Root}\resources\licenses\THIRD_PARTY_NOTICES.md
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Root}\dist\Based\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\based-gui.exe"; WorkingDir: "{userdocs}"; Comment: "Compare a base model with its instruct twin"
Name: "{group}\{#AppName} licences"; Filename: "{app}\_internal\licenses"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\based-gui.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\based-gui.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent
