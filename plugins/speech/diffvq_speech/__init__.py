"""diffvq-speech: speech data sets for diffvq's audio modality, synthesised with eSpeak NG."""
