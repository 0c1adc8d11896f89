"""The two displays and the health of every device the terminal drives.

A catalogue key is shown on both displays at once, each in its own language
(the cashier's and the customer's catalogues). A display fault never stops a
sale: it is recorded in the device health the till reads (GET /v1/health).
Each display is fed by its own writer thread (devices.display.DisplayWriter),
so a display that stops reading delays nothing but itself: not a sale, not the
other display, not the till interface, which all run under the terminal's lock.
A screen for an idle display that takes the frame at once (a non-blocking
write) is written by the thread that shows it, with no hand-off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from devices.display import Display, DisplayWriter
from devices.messages import Catalogue

__all__ = ["DeviceHealth", "DeviceBoard", "Displays"]

log = logging.getLogger("pos.terminal.displays")


@dataclass(frozen=True)
class DeviceHealth:
    ok: bool = True
    last_error: str | None = None


DeviceBoard = dict[str, DeviceHealth]   # scanner, printer, display, journal


def new_device_board() -> DeviceBoard:
    return {"scanner": DeviceHealth(), "printer": DeviceHealth(), "display": DeviceHealth(),
            "journal": DeviceHealth()}


class Displays:
    """Cashier and customer displays, each with its catalogue."""

    def __init__(self, cashier: Display, customer: Display, cashier_text: Catalogue, customer_text: Catalogue,
                 devices: DeviceBoard) -> None:
        self.cashier = DisplayWriter(cashier, "cashier", on_change=self._note)
        self.customer = DisplayWriter(customer, "customer", on_change=self._note)
        self.cashier_text = cashier_text
        self.customer_text = customer_text
        self._devices = devices

    def _note(self) -> None:
        """A writer's health changed (called from its thread): the device board the till reads follows."""
        errors = [e for e in (self.cashier.last_error, self.customer.last_error) if e]
        if errors:
            errors.append("the terminal keeps selling; the display shows the current screen once it reads again")
        self._devices["display"] = DeviceHealth(not errors, "; ".join(errors) if errors else None)

    def close(self) -> None:
        self.cashier.close()
        self.customer.close()

    def show(self, key: str, **params: str) -> None:
        """Cashier and customer texts for one catalogue key, each on its own display."""
        try:
            self.cashier.show(*self.cashier_text.cashier(key, **params))
            self.customer.show(*self.customer_text.customer(key, **params))
        except KeyError:
            log.error("no catalogue entry", extra={"kv": {"key": key}})
        except Exception as exc:  # a display fault never stops a sale
            self._devices["display"] = DeviceHealth(False, str(exc))
            log.warning("display fault", extra={"kv": {"error": str(exc)}})

    def show_cashier(self, line1: str, line2: str = "") -> None:
        """Free lines on the cashier's display only (typed digits, a manager's prompt)."""
        try:
            self.cashier.show(line1, line2)
        except Exception as exc:  # a display fault never stops a sale
            self._devices["display"] = DeviceHealth(False, str(exc))

    def show_cashier_text(self, label: str, text: str) -> None:
        """A text longer than the 2x20 lines on the cashier's display, where it can show it whole (the console)."""
        try:
            self.cashier.show_text(label, text)
        except Exception as exc:  # a display fault never stops a sale
            self._devices["display"] = DeviceHealth(False, str(exc))

    def cashier_lines(self, key: str, **params: str) -> tuple[str, str]:
        return self.cashier_text.cashier(key, **params)

    def has(self, key: str) -> bool:
        return self.cashier_text.has(key)

    def message(self, key: str, **params: str) -> dict[str, list[str]]:
        """Both texts of a key, as the till's views carry them."""
        return {"cashier": list(self.cashier_text.cashier(key, **params)),
                "customer": list(self.customer_text.customer(key, **params))}
