"""Hardware drivers behind small interfaces, and their emulated twins.

- `devices.scanner`: serial barcode scanner (pure `ScanFramer` + `Scanner` reader thread)
- `devices.display`: 2x20 customer display (serial, console, recording)
- `devices.keypad`: serial / console keypad
- `devices.receipt`: `ReceiptData` and `render_receipt` (ESC/POS bytes via python-escpos)
- `devices.printer`: receipt printer back ends and status
- `devices.print_queue`: durable SQLite print queue
- `devices.messages`: the display/receipt message catalogue (config/messages/*.toml)
- `devices.emulated`: pty- and socket-backed twins for tests and `pos demo`
"""
