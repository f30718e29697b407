"""The model family: the ``Seq2Seq`` interface (``protocol``), its recurrent parts (``cells``, ``attention``,
``encoder``, ``decoder``, ``stepwise``), the recurrent model (``recurrent``), the Transformer (``transformer``),
ensembles (``ensemble``), the builder from a config (``builder``) and bf16 product shapes on the CPU (``cpu_bf16``)."""
