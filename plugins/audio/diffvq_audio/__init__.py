"""Audio foundations for diffvq, shared by the speech and music plugins: reading and writing
audio files with clear errors (`io`), the log-mel representation and its Griffin-Lim inverse
(`mel`), the `audio` modality with its judge (`modality`, `judge`), and the `audio-folder` data
set (`datasets`)."""
