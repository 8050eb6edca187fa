#!/usr/bin/python3
"""switch-to-configuration of the test closures (closures.nix copies this file
into each as bin/switch-to-configuration), run against the real systemd of a
test target (target.sh).

Modelled on NixOS's switch-to-configuration-ng: nixpkgs
pkgs/by-name/sw/switch-to-configuration-ng/src/src/main.rs, read at commit
173582451f148f60a0ea8860b81a2f0ec6f0d7bb (the stored upstream version; the
unit handling is the same in the later 00401fd7 one read beside it, which adds
only nspawn-container handling; which nixos-26.05/26.11 commit each is could not
be confirmed here: nixpkgs' history is too big to fetch). What it does, in the
order of do_system_switch:

  1. boot, switch: install the boot loader (here: /boot/default-system, the link
     target.sh boots); boot ends there.
  2. The active units (list-units, not inactive), each with its unit file in the
     running system and in the new one: a unit missing from the new system is
     stopped (unless X-StopOnRemoval=false); an active target is started at the
     end (except the sleep targets, RefuseManualStart=, X-OnlyManualStart=), and
     stopped first with X-StopOnReconfiguration=; any other unit whose file
     changed (compare_units: a parsed comparison, [Install] and some [Unit] keys
     ignored) is reloaded when only X-Reload-Triggers (or a mount's Options)
     changed, else handled as handle_modified_unit does: X-ReloadIfChanged=true
     reloads, X-RestartIfChanged=false (or RefuseManualStop=, X-OnlyManualStart=)
     leaves it alone, a service is stopped now and started after the activation
     unless X-StopIfChanged=false (then restarted), other units are restarted.
  3. /etc/fstab against the new one: a mount whose device or type changed is
     restarted, whose options changed reloaded, that is gone stopped.
  4. dry-activate prints what it would do and ends.
  5. The stop jobs; the activation ($out/activate: /etc and /run/current-system
     point at the new system); reset-failed (every failed unit is forgotten); a
     daemon-reload; a restart of sysinit-reactivation.target; the reloads, the
     restarts, then one start of every unit to start, targets included: an active
     target's start queues a start of every unit it wants that is not running
     (new units, and units whose failed state the reset cleared).
  6. Exit 4 when a job failed, or when, once systemd settled, any unit is failed
     or in auto-restart with a non-zero exit status (ExecMainStatus); the units
     are named ("warning: the following units failed: ...").

What NixOS has and the test targets do not: the units of the base system (its
Debian units, in /lib/systemd/system and /etc/systemd/system) stand for the
upstream units every NixOS generation links into /etc/systemd/system: they are
the same in the running and the new system. The NixOS-style units of a system
are in its etc/systemd/system, which the target reads as
/etc/systemd/system.attached. No re-exec of systemd, no user units, no
init-interface-version check, no /etc/NIXOS check, no socket-activated units.
"""
import fcntl
import glob
import os
import re
import subprocess
import sys
import time

OUT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
CURRENT_UNITS = "/etc/systemd/system.attached"
BASE_UNIT_DIRS = ["/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"]
START_LIST = "/run/nixos/start-list"
RESTART_LIST = "/run/nixos/restart-list"
RELOAD_LIST = "/run/nixos/reload-list"
SYSINIT_REACTIVATION_TARGET = "sysinit-reactivation.target"
UNIT_SECTION_IGNORES = {
    "X-Reload-Triggers", "Description", "Documentation", "OnFailure", "OnSuccess", "OnFailureJobMode",
    "IgnoreOnIsolate", "StopWhenUnneeded", "RefuseManualStart", "RefuseManualStop", "AllowIsolate",
    "CollectMode", "SourcePath",
}
TEMPLATE_RE = re.compile(r"^(.*)@[^.]*\.(.*)$")
UNIT_NAME_RE = re.compile(r"^(.*)\.[a-z]*$")


def log(message):
    print(message, file=sys.stderr, flush=True)


def systemctl(*args, check=False):
    r = subprocess.run(["systemctl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"systemctl {' '.join(args)}: {r.stderr.strip()}")
    return r


# --- Unit files -----------------------------------------------------------


def unit_path(units_dir, unit):
    """The unit's file in a system: its own unit directory first, then the base's
    (the same in every system, as NixOS's upstream units are); None when neither has it."""
    for d in ([units_dir] if units_dir else []) + BASE_UNIT_DIRS:
        p = os.path.join(d, unit)
        if os.path.lexists(p):
            return p
    return None


def parse_ini(data, path):
    """parse_systemd_ini: sections to keys to all values; an empty value clears the
    key's earlier values; [Install] is skipped."""
    section = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        while line.endswith("\\") and i + 1 < len(lines):  # continuation lines
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            if section != "Install":
                data.setdefault(section, {})
            continue
        if section is None or section == "Install" or "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if value == "":
            data[section][key] = []
        else:
            data[section].setdefault(key, []).append(value)


def parse_unit(unit_file, base_unit_file):
    """parse_unit: the unit, its drop-ins (<file>.d/*.conf), and for a template instance
    the instance's drop-ins."""
    data = {}
    parse_ini(data, base_unit_file)
    for dropin in sorted(glob.glob(base_unit_file + ".d/*.conf")):
        parse_ini(data, dropin)
    if unit_file != base_unit_file:
        for dropin in sorted(glob.glob(unit_file + ".d/*.conf")):
            parse_ini(data, dropin)
    return data


def unit_bool(info, section, key, default):
    values = (info or {}).get(section, {}).get(key)
    if not values:
        return default
    return values[-1] in ("1", "yes", "true", "on")


EQUAL, NEEDS_RESTART, NEEDS_RELOAD = "equal", "restart", "reload"


def compare_units(cur, new):
    """compare_units, as main.rs has it."""
    ret = EQUAL
    new_sections = set(new)
    for section, cur_keys in cur.items():
        if section not in new_sections:
            if section == "Unit" and all(k in UNIT_SECTION_IGNORES for k in cur_keys):
                continue
            return NEEDS_RESTART
        new_sections.discard(section)
        new_keys = set(new[section])
        for key, value in cur_keys.items():
            new_keys.discard(key)
            if key not in new[section]:
                if section == "Unit" and key in UNIT_SECTION_IGNORES:
                    continue
                return NEEDS_RESTART
            if value != new[section][key]:
                if section == "Unit":
                    if key == "X-Reload-Triggers":
                        ret = NEEDS_RELOAD
                        continue
                    if key in UNIT_SECTION_IGNORES:
                        continue
                if section == "Mount" and key == "Options":
                    ret = NEEDS_RELOAD
                    continue
                return NEEDS_RESTART
        if new_keys:
            if section != "Unit":
                return NEEDS_RESTART
            for key in new_keys:
                if key == "X-Reload-Triggers":
                    ret = NEEDS_RELOAD
                elif key not in UNIT_SECTION_IGNORES:
                    return NEEDS_RESTART
    if new_sections:
        if new_sections != {"Unit"}:
            return NEEDS_RESTART
        for key in new.get("Unit", {}):
            if key not in UNIT_SECTION_IGNORES:
                return NEEDS_RESTART
            if key == "X-Reload-Triggers":
                ret = NEEDS_RELOAD
    return ret


# --- The plan ---------------------------------------------------------------


class Plan:
    def __init__(self, dry):
        self.dry = dry
        self.stop, self.start, self.restart, self.reload, self.skip, self.filtered = (set() for _ in range(6))
        self.start |= read_list(START_LIST)
        self.restart |= read_list(RESTART_LIST)
        self.reload |= read_list(RELOAD_LIST)

    def record(self, path, unit):
        """record_unit: written down, so an interrupted switch is continued by the next."""
        if not self.dry:
            os.makedirs("/run/nixos", mode=0o755, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(unit + "\n")

    def unrecord(self, path, unit):
        if self.dry or not os.path.exists(path):
            return
        kept = [u for u in read_list(path) if u != unit]
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(u + "\n" for u in kept)

    def handle_modified_unit(self, unit, base_name, new_info, active):
        """handle_modified_unit (only the cases the test systems have: no nspawn units)."""
        if unit in ("sysinit.target", "basic.target", "multi-user.target", "graphical.target") or unit.endswith(
            (".unit", ".slice")
        ):
            return
        if unit.endswith(".mount"):
            if unit in ("-.mount", "nix.mount"):
                self.reload.add(unit)
                self.record(RELOAD_LIST, unit)
            else:
                self.restart.add(unit)
                self.record(RESTART_LIST, unit)
            return
        if unit.endswith(".socket"):
            return
        if unit_bool(new_info, "Service", "X-ReloadIfChanged", False) and unit not in self.restart and unit not in self.stop:
            self.reload.add(unit)
            self.record(RELOAD_LIST, unit)
        elif (
            not unit_bool(new_info, "Service", "X-RestartIfChanged", True)
            or unit_bool(new_info, "Unit", "RefuseManualStop", False)
            or unit_bool(new_info, "Unit", "X-OnlyManualStart", False)
        ):
            self.skip.add(unit)
        elif not unit_bool(new_info, "Service", "X-StopIfChanged", True) or not unit.endswith(".service"):
            self.restart.add(unit)
            self.record(RESTART_LIST, unit)
            if unit in self.reload:
                self.reload.discard(unit)
                self.unrecord(RELOAD_LIST, unit)
        else:
            socket_activated = False
            sockets = " ".join((new_info or {}).get("Service", {}).get("Sockets", [])).split() or [f"{base_name}.socket"]
            for socket in sockets:
                if socket in active:
                    self.stop.add(socket)
                    if unit_path(os.path.join(OUT, "etc/systemd/system"), socket):
                        self.start.add(socket)
                        self.record(START_LIST, socket)
                        socket_activated = True
            if unit_bool(new_info, "Service", "X-NotSocketActivated", False):
                socket_activated = False
            if not socket_activated:
                self.start.add(unit)
                self.record(START_LIST, unit)
            self.stop.add(unit)
            if unit in self.reload:
                self.reload.discard(unit)
                self.unrecord(RELOAD_LIST, unit)


def read_list(path):
    try:
        with open(path, encoding="utf-8") as f:
            return {line.strip() for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def active_units():
    """get_active_units: every unit that is not inactive, with its state and substate."""
    r = systemctl("list-units", "--all", "--full", "--plain", "--no-legend", "--no-pager", check=True)
    units = {}
    for line in r.stdout.splitlines():
        fields = line.split(None, 4)
        if len(fields) < 4:
            continue
        unit, _load, state, sub = fields[:4]
        if state != "inactive":
            units[unit] = (state, sub)
    return units


def plan_units(plan, active):
    current_dir = os.path.realpath(CURRENT_UNITS) if os.path.lexists(CURRENT_UNITS) else None
    new_dir = os.path.join(OUT, "etc/systemd/system")
    for unit, (state, _sub) in sorted(active.items()):
        cur_file, new_file = unit_path(current_dir, unit), unit_path(new_dir, unit)
        base_unit = unit
        cur_base, new_base = cur_file, new_file
        m = TEMPLATE_RE.match(unit)
        if m and cur_file is None and new_file is None:
            base_unit = f"{m.group(1)}@.{m.group(2)}"
            cur_base, new_base = unit_path(current_dir, base_unit), unit_path(new_dir, base_unit)
        m = UNIT_NAME_RE.match(base_unit)
        base_name = m.group(1) if m else base_unit
        if cur_base is None or state not in ("active", "activating"):
            continue
        if new_base is None or os.path.realpath(new_base) == "/dev/null":
            cur_info = parse_unit(cur_file or cur_base, cur_base)
            if unit_bool(cur_info, "Unit", "X-StopOnRemoval", True):
                plan.stop.add(unit)
        elif unit.endswith(".target"):
            new_info = parse_unit(new_file or new_base, new_base)
            if not (
                unit in ("suspend.target", "hibernate.target", "hybrid-sleep.target")
                or unit_bool(new_info, "Unit", "RefuseManualStart", False)
                or unit_bool(new_info, "Unit", "X-OnlyManualStart", False)
            ):
                plan.start.add(unit)
                plan.record(START_LIST, unit)
                plan.filtered.add(unit)  # "Don't spam the user with target units that always get started."
            if unit_bool(new_info, "Unit", "X-StopOnReconfiguration", False):
                plan.stop.add(unit)
        else:
            cur_info = parse_unit(cur_file or cur_base, cur_base)
            new_info = parse_unit(new_file or new_base, new_base)
            result = compare_units(cur_info, new_info)
            if result == NEEDS_RESTART:
                plan.handle_modified_unit(unit, base_name, new_info, active)
            elif result == NEEDS_RELOAD and unit not in plan.restart:
                plan.reload.add(unit)
                plan.record(RELOAD_LIST, unit)


def parse_fstab(path):
    """parse_fstab: mount point -> (device, type, options); swaps are left out (the test
    systems have none)."""
    filesystems = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return filesystems
    for line in lines:
        if "#" in line:
            continue
        fields = line.split()
        if len(fields) < 3 or fields[2] == "swap":
            continue
        filesystems[fields[1]] = (fields[0], fields[2], fields[3] if len(fields) > 3 else "")
    return filesystems


def mount_unit(mount_point):
    return subprocess.run(["systemd-escape", "--suffix=mount", "-p", mount_point], stdout=subprocess.PIPE, text=True, check=True).stdout.strip()


def plan_fstab(plan):
    """Changed mounts remount or restart, removed ones stop; new ones are mounted when
    local-fs.target is started."""
    current = parse_fstab("/etc/fstab")
    new = parse_fstab(os.path.join(OUT, "etc/fstab"))
    for mount_point, (device, fs_type, options) in current.items():
        unit = mount_unit(mount_point)
        if mount_point in new:
            n_device, n_type, n_options = new[mount_point]
            if fs_type != n_type or device != n_device:
                if mount_point in ("/", "/nix"):
                    if options != n_options:
                        plan.reload.add(unit)
                        plan.record(RELOAD_LIST, unit)
                    else:
                        plan.skip.add(unit)
                else:
                    plan.restart.add(unit)
                    plan.record(RESTART_LIST, unit)
            elif options != n_options:
                plan.reload.add(unit)
                plan.record(RELOAD_LIST, unit)
        else:
            plan.stop.add(unit)


def listing(units):
    return ", ".join(sorted(units, key=str.lower))


# --- The switch -------------------------------------------------------------


def run_jobs(verb, units):
    """One systemctl call for the units (systemd queues the jobs together and
    systemctl waits for all of them); False when a job failed."""
    if not units:
        return True
    r = systemctl(verb, *sorted(units))
    if r.returncode != 0:
        log(f"Failed to {verb} {listing(units)}: {r.stderr.strip()}")
        return False
    return True


def unit_is_active(unit):
    return systemctl("show", "-p", "ActiveState", "--value", unit).stdout.strip() in ("active", "activating")


def failed_after(before):
    """The final check: failed units, and services in auto-restart whose last run
    exited non-zero; and the new units that run now."""
    failed, new_units = [], []
    for unit, (state, sub) in active_units().items():
        if state == "failed":
            failed.append(unit)
            continue
        if sub == "auto-restart" and unit.endswith(".service"):
            status = systemctl("show", "-p", "ExecMainStatus", "--value", unit).stdout.strip()
            if status not in ("", "0"):
                failed.append(unit)
                continue
        if unit not in before and not unit.endswith(".scope"):
            new_units.append(unit)
    return failed, new_units


def switch(action):
    dry = action == "dry-activate"
    os.makedirs("/run/nixos", mode=0o755, exist_ok=True)
    lock = open("/run/nixos/switch-to-configuration.lock", "a", encoding="utf-8")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log("Could not acquire lock")
        return 1
    if action in ("switch", "boot"):
        # The boot loader: the entry target.sh boots (as GRUB's default entry).
        tmp = "/boot/default-system.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(OUT, tmp)
        os.replace(tmp, "/boot/default-system")
        os.sync()
    if action == "boot":
        return 0

    plan = Plan(dry)
    active = active_units()
    plan_units(plan, active)
    plan_fstab(plan)

    stop_shown = plan.stop - plan.filtered
    if dry:
        if stop_shown:
            log(f"would stop the following units: {listing(stop_shown)}")
        if plan.skip:
            log(f"would NOT stop the following changed units: {listing(plan.skip)}")
        log("would activate the configuration...")
        if plan.reload:
            log(f"would reload the following units: {listing(plan.reload)}")
        if plan.restart:
            log(f"would restart the following units: {listing(plan.restart)}")
        start_shown = plan.start - plan.filtered
        if start_shown:
            log(f"would start the following units: {listing(start_shown)}")
        return 0

    exit_code = 0
    if plan.stop:
        if stop_shown:
            log(f"stopping the following units: {listing(stop_shown)}")
        if not run_jobs("stop", plan.stop):
            exit_code = 4
    if plan.skip:
        log(f"NOT restarting the following changed units: {listing(plan.skip)}")

    log("activating the configuration...")
    if subprocess.run([os.path.join(OUT, "activate"), OUT]).returncode != 0:
        log("Failed to run activate script")
        exit_code = 2

    # "Forget about previously failed services."
    systemctl("reset-failed")
    systemctl("daemon-reload", check=True)

    log(f"restarting {SYSINIT_REACTIVATION_TARGET}")
    if not run_jobs("restart", {SYSINIT_REACTIVATION_TARGET}):
        exit_code = 4

    for unit in sorted(plan.reload):
        if not unit_is_active(unit):
            info = {}
            path = os.path.join(OUT, "etc/systemd/system", unit)
            if os.path.exists(path):
                info = parse_unit(path, path)
            if not unit_bool(info, "Unit", "RefuseManualStart", False) or unit_bool(info, "Unit", "X-OnlyManualStart", False):
                plan.start.add(unit)
                plan.record(START_LIST, unit)
            plan.reload.discard(unit)
            plan.unrecord(RELOAD_LIST, unit)
    if plan.reload:
        log(f"reloading the following units: {listing(plan.reload)}")
        if not run_jobs("reload", plan.reload):
            exit_code = 4
        os.remove(RELOAD_LIST) if os.path.exists(RELOAD_LIST) else None
    if plan.restart:
        log(f"restarting the following units: {listing(plan.restart)}")
        if not run_jobs("restart", plan.restart):
            exit_code = 4
        os.remove(RESTART_LIST) if os.path.exists(RESTART_LIST) else None

    start_shown = plan.start - plan.filtered
    if start_shown:
        log(f"starting the following units: {listing(start_shown)}")
    if not run_jobs("start", plan.start):
        exit_code = 4
    if os.path.exists(START_LIST):
        os.remove(START_LIST)

    # "Wait for events from systemd to settle."
    time.sleep(0.25)
    failed, new_units = failed_after(active)
    if new_units:
        log(f"the following new units were started: {listing(new_units)}")
    if failed:
        log(f"warning: the following units failed: {listing(failed)}")
        subprocess.run(["systemctl", "status", "--no-pager", "--full", *sorted(failed)], stdout=sys.stderr)
        exit_code = 4
    return exit_code


def main():
    actions = ("switch", "boot", "test", "dry-activate", "check")
    if len(sys.argv) != 2 or sys.argv[1] not in actions:
        log(f"Usage: {sys.argv[0]} [check|switch|boot|test|dry-activate]")
        return 1
    if os.geteuid() != 0:
        log(f"{sys.argv[0]} must be run as the root user")
        return 1
    if sys.argv[1] == "check":
        return 0
    return switch(sys.argv[1])


if __name__ == "__main__":
    sys.exit(main())
