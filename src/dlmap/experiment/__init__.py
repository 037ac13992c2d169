"""The 2AFC experiment (docs/compare.md): a study database built from
``dlmap select``'s PAIRS.csv (``study``), the web app subjects answer in (``app``), and the
export of their answers as the count matrices ``dlmap rank`` reads (``export``).
"""
