"""Studies: many trainings of each prior, one per cell of (data fraction, model size, budget,
seed), each with a validation curve, drawn as a map of loss against training compute.

    cells      what a cell is, its data subset, steps for its budget, where it lives
    training   one cell's training: the validation curve, best and final weights, samples
    results    every cell read back as curve points, sample quality and copies, crossovers
               (diffvq.evaluate.crossover) and the map (diffvq.evaluate.map_plot)

The pipeline runs each cell as a stage with its own fingerprint, so a study resumes, reuses
finished cells and grows. Imports the contract, the trainer, the recipe and the evaluation;
only the pipeline imports it.
"""
