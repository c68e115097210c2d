"""Neural building blocks shared by first-party and third-party components."""
