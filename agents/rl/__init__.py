"""Learning to bid: what a learning bidder sees and does (`features`), the market run one
decision at a time (`session`, `reward`), the Gymnasium and PettingZoo environments around it
(`env`, `parallel`), learned policies as strategies (`policy`), their training (`cem`) and
their comparison with a baseline on held-out seeds (`compare`). Only the environments and
training need Gymnasium, PettingZoo and greenlet (`pip install 'gpumarket[learn]'`); a
learned policy runs on numpy alone."""
