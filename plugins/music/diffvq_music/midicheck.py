"""A MIDI file's structure, read cheaply before music21 sees it, and the limits it must keep.

music21 accepts a MIDI file cut in half without a word (it reads what is there), and spends
minutes and gigabytes on a tiny file that holds one two-hour note (it splits the note into
tied notes per bar, then the synthesizer renders every second). This reader walks the chunks
and events once, in time linear in the file's size, and refuses a file whose tracks are cut
short, that does not end its tracks, or that would play longer or hold more notes than the data
set allows, before any of that work.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

MAX_BYTES = 16 * 2**20  # far beyond a real piece's MIDI file (a few hundred KB at most)
MAX_SECONDS = 600.0  # midi-folder's default max_file_seconds: ten minutes of music
MAX_NOTES = 100_000  # and max_notes: a long, dense orchestral piece has some tens of thousands
DEFAULT_TEMPO = 500_000  # microseconds per quarter note (120 bpm) until a set-tempo event


class BadMidi(Exception):
    """A file this reader refuses; `reason` is a short name to count, `detail` says more."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}{': ' + detail if detail else ''}")
        self.reason, self.detail = reason, detail


class MidiLimits(NamedTuple):
    """What one file may ask of the decoder (a data set's options)."""

    max_seconds: float  # playing time
    max_notes: int  # note-on events


class MidiSummary(NamedTuple):
    tracks: int
    notes: int
    quarters: float  # length in quarter notes (nan for SMPTE time)
    seconds: float  # the longer of: at its first tempo throughout, and with its tempo changes


def _vlq(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """A variable-length quantity at `pos` (at most 4 bytes, as the standard allows)."""
    value = 0
    for i in range(4):
        if pos >= end:
            raise BadMidi("truncated MIDI", "an event is cut short")
        b = data[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            return value, pos
    raise BadMidi("damaged MIDI", "a length or time of more than 4 bytes")


def _track(data: bytes, pos: int, end: int, k: int, notes_left: int
           ) -> tuple[int, int, list[tuple[int, int]]]:
    """Walk one track chunk's events: (end tick, note-ons, [(tick, tempo)])."""
    tick, notes, tempos, status = 0, 0, [], 0
    while pos < end:
        delta, pos = _vlq(data, pos, end)
        tick += delta
        if pos >= end:
            raise BadMidi("truncated MIDI", f"track {k} is cut short")
        b = data[pos]
        if b == 0xFF:  # meta event: type, length, data
            if pos + 1 >= end:
                raise BadMidi("truncated MIDI", f"track {k} is cut short")
            kind = data[pos + 1]
            length, pos = _vlq(data, pos + 2, end)
            if pos + length > end:
                raise BadMidi("truncated MIDI", f"track {k} is cut short")
            if kind == 0x51 and length == 3:
                tempos.append((tick, int.from_bytes(data[pos:pos + 3], "big")))
            pos += length
            if kind == 0x2F:
                return tick, notes, tempos
            continue
        if b in (0xF0, 0xF7):  # system exclusive: length, data
            length, pos = _vlq(data, pos + 1, end)
            pos += length
            if pos > end:
                raise BadMidi("truncated MIDI", f"track {k} is cut short")
            continue
        if b & 0x80:
            status = b
            pos += 1
        elif not status:
            raise BadMidi("damaged MIDI", f"track {k}: a data byte where an event should start")
        if status >= 0xF0:
            raise BadMidi("damaged MIDI", f"track {k}: system message 0x{status:02X} in a track")
        size = 1 if status & 0xF0 in (0xC0, 0xD0) else 2
        if pos + size > end:
            raise BadMidi("truncated MIDI", f"track {k} is cut short")
        if status & 0xF0 == 0x90 and data[pos + 1]:  # a note-on with velocity 0 is a note-off
            notes += 1
            if notes > notes_left:
                return tick, notes, tempos  # over the limit: the caller says so
        pos += size
    raise BadMidi("truncated MIDI", f"track {k} has no end-of-track event (cut short?)")


def _seconds(end: int, division: int, tempos: list[tuple[int, int]]) -> float:
    """Playing time of `end` ticks: the longer of the tempo map's and the first tempo's (the
    synthesizer plays a whole score at its first tempo; FluidSynth follows every change)."""
    tempos = sorted(tempos)
    first = tempos[0][1] if tempos else DEFAULT_TEMPO
    at_first = end * first / division / 1e6
    total, last_tick, tempo = 0.0, 0, DEFAULT_TEMPO
    for tick, t in tempos:
        tick = min(tick, end)
        total += (tick - last_tick) * tempo / division / 1e6
        last_tick, tempo = tick, t
    total += (end - last_tick) * tempo / division / 1e6
    return max(at_first, total)


def check_file(path: Path, limits: MidiLimits) -> MidiSummary:
    """`scan` of the file at `path`, whose size is checked before it is read. Raises BadMidi."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise BadMidi("too large", f"{size:,} bytes, more than any real piece's MIDI file "
                                       f"({MAX_BYTES:,})")
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise BadMidi("cannot read", e.strerror or type(e).__name__) from None
    return scan(data, limits)


def scan(data: bytes, limits: MidiLimits) -> MidiSummary:
    """The file's tracks, notes and length, checked against `limits`. Raises BadMidi."""
    if len(data) > MAX_BYTES:
        raise BadMidi("too large", f"{len(data):,} bytes, more than any real piece's MIDI file "
                                   f"({MAX_BYTES:,})")
    if data[:4] != b"MThd":
        raise BadMidi("not MIDI", "no MThd header (not a Standard MIDI File)")
    if len(data) < 14:
        raise BadMidi("truncated MIDI", "the header is cut short")
    size, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    if size < 6 or fmt > 2 or ntracks == 0:
        raise BadMidi("damaged MIDI", f"header says format {fmt}, {ntracks} tracks, "
                                      f"header size {size}")
    if division & 0x8000:  # SMPTE: frames per second x ticks per frame
        fps, per_frame = 256 - (division >> 8), division & 0xFF
        ticks_per_second, division = fps * per_frame, 0
        if not ticks_per_second:
            raise BadMidi("damaged MIDI", "SMPTE time division of 0 ticks per frame")
    elif division == 0:
        raise BadMidi("damaged MIDI", "time division of 0 ticks per quarter note")
    pos, found, notes, end_tick, tempos = 8 + size, 0, 0, 0, []
    while found < ntracks:
        if pos + 8 > len(data):
            raise BadMidi("truncated MIDI", f"header announces {ntracks} tracks, the file "
                                            f"holds {found}")
        kind, length = data[pos:pos + 4], struct.unpack(">I", data[pos + 4:pos + 8])[0]
        pos += 8
        if pos + length > len(data):
            raise BadMidi("truncated MIDI", f"track {found + 1} declares {length:,} bytes, "
                                            f"the file holds {len(data) - pos:,}")
        if kind == b"MTrk":
            found += 1
            t_end, t_notes, t_tempos = _track(data, pos, pos + length, found,
                                              limits.max_notes - notes)
            notes += t_notes
            if notes > limits.max_notes:
                raise BadMidi("too many notes", f"more than {limits.max_notes:,} "
                                                f"(data.max_notes)")
            end_tick, tempos = max(end_tick, t_end), tempos + t_tempos
        pos += length  # other chunk kinds are skipped, as the standard says
    if division:
        quarters, seconds = end_tick / division, _seconds(end_tick, division, tempos)
    else:
        quarters, seconds = float("nan"), end_tick / ticks_per_second
    if seconds > limits.max_seconds:
        raise BadMidi("too long", f"plays {seconds:,.0f} s, more than {limits.max_seconds:g} s "
                                  f"(data.max_file_seconds)")
    return MidiSummary(found, notes, quarters, seconds)
