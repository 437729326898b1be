// Package legacy holds the PC platform's leftovers a stock kernel touches
// without ACPI: the i8042 keyboard controller (whose reset line Linux
// pulses to reboot), the 0xCF9 reset control register, the CMOS RTC (whose
// absence costs tens of thousands of exits per boot) and the POST code
// port 0x80. Each takes a narrow callback instead of the machine.
package legacy
