"""systemd notify (sd_notify): readiness, status and watchdog notifications to the service manager.

A thin wrapper over the `sdnotify` library (the sd_notify(3) datagram
protocol on $NOTIFY_SOCKET). Outside systemd (no NOTIFY_SOCKET: a laptop,
`pos demo`, tests) every call is a no-op, so the daemon calls it
unconditionally.

How `pos run` uses it (systemd/pos-terminal.service is Type=notify with
WatchdogSec=):

    notifier = SystemdNotifier()
    heartbeat = WatchdogHeartbeat(notifier, watchdog_interval())
    notifier.status("recovering open sales")
    ... resume open sales/refunds, calling heartbeat.beat(now) between steps ...
    ... start devices ...
    notifier.ready("ready: 0 open items")      # only now is the unit "active"
    while running:
        ... one iteration of the main loop ...
        heartbeat.beat(clock.now())            # sends WATCHDOG=1 when due
    notifier.stopping()
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import sdnotify

__all__ = ["SystemdNotifier", "WatchdogHeartbeat", "watchdog_interval"]


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when no watchdog is asked for.

    Follows sd_watchdog_enabled(3): WATCHDOG_USEC must be a positive integer
    and, when WATCHDOG_PID is set, it must name this process (otherwise the
    variables were inherited from a parent and are not for us). The answer is
    half the watchdog timeout, as that man page recommends, so one late
    iteration does not get the daemon killed.
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / 2


class SystemdNotifier:
    """Sends sd_notify messages; silent when not started by systemd.

    Errors while sending are swallowed (sdnotify's default): losing a status
    line must never stop a payment. A missed heartbeat shows up as a watchdog
    restart in the journal, which is the right signal.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.socket_path: str | None = env.get("NOTIFY_SOCKET") or None
        self._notifier: sdnotify.SystemdNotifier | None = None
        if self.socket_path:
            # sdnotify reads NOTIFY_SOCKET itself (and handles the '@'
            # abstract-namespace form); pass ours through when a mapping
            # other than os.environ was given.
            saved = os.environ.get("NOTIFY_SOCKET")
            os.environ["NOTIFY_SOCKET"] = self.socket_path
            try:
                self._notifier = sdnotify.SystemdNotifier()
            finally:
                if saved is None:
                    os.environ.pop("NOTIFY_SOCKET", None)
                else:
                    os.environ["NOTIFY_SOCKET"] = saved
            if self._notifier.socket is None:
                self._notifier = None

    @property
    def enabled(self) -> bool:
        """True when messages actually go to a notify socket."""
        return self._notifier is not None

    def _send(self, *fields: str) -> None:
        if self._notifier is not None:
            self._notifier.notify("\n".join(fields))

    def ready(self, status: str | None = None) -> None:
        """The daemon has recovered open work and started its devices."""
        fields = ["READY=1"]
        if status:
            fields.append(_status_field(status))
        self._send(*fields)

    def status(self, text: str) -> None:
        """A one-line status shown by `systemctl status pos-terminal`."""
        self._send(_status_field(text))

    def watchdog(self) -> None:
        """Heartbeat: the main loop is alive."""
        self._send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for more start/stop time (a long recovery), see sd_notify(3)."""
        self._send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def stopping(self, status: str | None = None) -> None:
        """The daemon is shutting down on purpose."""
        fields = ["STOPPING=1"]
        if status:
            fields.append(_status_field(status))
        self._send(*fields)

    def close(self) -> None:
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.close()
        self._notifier = None


def _status_field(text: str) -> str:
    # One datagram carries newline-separated assignments: a newline inside
    # the status would start a bogus assignment.
    return "STATUS=" + " ".join(text.split())


class WatchdogHeartbeat:
    """Sends WATCHDOG=1 at most once per interval, driven by the caller's clock.

    Never sleeps and never reads the time itself: the main loop passes `now`
    (monotonic seconds), so tests drive it with plain numbers.
    """

    def __init__(self, notifier: SystemdNotifier, interval: float | None) -> None:
        self.notifier = notifier
        self.interval = interval
        self._last: float | None = None

    def beat(self, now: float) -> bool:
        """Send a heartbeat if one is due; True when one was sent."""
        if self.interval is None:
            return False
        if self._last is not None and now - self._last < self.interval:
            return False
        self.notifier.watchdog()
        self._last = now
        return True
