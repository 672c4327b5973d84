"""Evaluation: how well ragserve finds, and answers from, the right documentation.

The modules, lowest first (each imports only those above it):

- ``statistics``: percentiles, bootstrap intervals, the sign test;
- ``grading``: pure text checks of one answer (token F1, citations, refusals, judge prompt);
- ``answers``: grade each generated answer and aggregate per generator;
- ``metrics``: question files, the retrieval score and its companions, baseline comparison;
- ``report``: the HTML report and the result files of a run (write and read back);
- ``run``: ``ragserve eval`` itself, a ``QueryAgent`` against a live index.

Nothing is imported here, so ``import ragserve.eval.metrics`` stays free of
Ray, torch and the stores; only ``run`` pulls in the query path.
"""
