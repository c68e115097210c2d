"""diffvq-music: Bach chorales and MIDI folders rendered as audio, plus a tonality measure."""
