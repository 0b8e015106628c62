; NSIS script for the Windows installer of Based (64-bit, Unicode). packaging/build_windows.sh runs
;   makensis -DVERSION=0.1.0 -DBUNDLE=<dist\Based> -DROOT=<checkout> -DOUTFILE=<setup.exe> based.nsi
; makensis runs on Linux (Debian's nsis package) as well as on Windows.
;
; - per user, no admin rights: installs to %LOCALAPPDATA%\Programs\Based, writes only HKCU;
; - a licence page (the third-party notices; Based itself is MIT);
; - a Start-menu shortcut "Based" to the windowed based-gui.exe, with the app icon;
; - the uninstaller registered in Apps & Features (HKCU ...\Uninstall\Based);
; - /S installs silently (/D=<folder> picks another folder); "uninstall.exe /S" removes it silently.
; The uninstaller removes only what the installer put there: based.exe, based-gui.exe,
; uninstall.exe, the _internal folder and the shortcut; the folder itself only when then empty.
; Models and settings live in the user's own folders and are left alone.

Unicode true
Target amd64-unicode
ManifestDPIAware true
RequestExecutionLevel user
SetCompressor /SOLID lzma
SetCompressorDictSize 64

!ifndef VERSION
  !error "makensis -DVERSION=x.y.z is required"
!endif
!ifndef BUNDLE
  !error "makensis -DBUNDLE=<PyInstaller folder> is required"
!endif
!ifndef ROOT
  !define ROOT "..\.."
!endif
!ifndef OUTFILE
  !define OUTFILE "Based-${VERSION}-win64-setup.exe"
!endif

!define APPNAME "Based"
!define PUBLISHER "Based developers"
!define UNINSTKEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APPNAME}"

!include "MUI2.nsh"
!include "x64.nsh"
!include "FileFunc.nsh"

Name "${APPNAME}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${APPNAME}"
InstallDirRegKey HKCU "${UNINSTKEY}" "InstallLocation"
BrandingText "${APPNAME} ${VERSION}"

VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${APPNAME}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APPNAME} installer"
VIAddVersionKey "CompanyName" "${PUBLISHER}"
VIAddVersionKey "LegalCopyright" "MIT licence; bundled software under its own licences"

!define MUI_ICON "${ROOT}\resources\icons\based.ico"
!define MUI_UNICON "${ROOT}\resources\icons\based.ico"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\based-gui.exe"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APPNAME}"

!insertmacro MUI_PAGE_WELCOME
!define MUI_LICENSEPAGE_TEXT_TOP "Based is MIT-licensed. It bundles the software below under its own licences."
!insertmacro MUI_PAGE_LICENSE "${ROOT}\resources\licenses\THIRD_PARTY_NOTICES.md"
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Function .onInit
  SetShellVarContext current
  ${IfNot} ${RunningX64}
    MessageBox MB_ICONSTOP "${APPNAME} needs 64-bit Windows." /SD IDOK
    Abort
  ${EndIf}
FunctionEnd

Function un.onInit
  SetShellVarContext current
FunctionEnd

Section "Install"
  SetOutPath "$INSTDIR"
  ; An older version's files must not mix with this one's.
  RMDir /r "$INSTDIR\_internal"
  File "${BUNDLE}\based.exe"
  File "${BUNDLE}\based-gui.exe"
  File /r "${BUNDLE}\_internal"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateShortcut "$SMPROGRAMS\${APPNAME}.lnk" "$INSTDIR\based-gui.exe" "" \
      "$INSTDIR\based-gui.exe" 0 SW_SHOWNORMAL "" "Compare a base model with its instruct twin"

  WriteRegStr HKCU "${UNINSTKEY}" "DisplayName" "${APPNAME}"
  WriteRegStr HKCU "${UNINSTKEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTKEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINSTKEY}" "DisplayIcon" "$INSTDIR\based-gui.exe,0"
  WriteRegStr HKCU "${UNINSTKEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTKEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTKEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTKEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTKEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  IntFmt $0 "0x%08X" $0
  WriteRegDWORD HKCU "${UNINSTKEY}" "EstimatedSize" "$0"
SectionEnd

Section "Uninstall"
  Delete "$SMPROGRAMS\${APPNAME}.lnk"
  Delete "$INSTDIR\based.exe"
  Delete "$INSTDIR\based-gui.exe"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINSTKEY}"
SectionEnd
