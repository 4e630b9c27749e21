"""Learning to bid: what a learning bidder sees and does (`features`), the Gymnasium and
PettingZoo environments that run a market around it (`env`, `parallel`), learned policies as
strategies (`policy`) and their training (`cem`). Only the environments need Gymnasium and
PettingZoo (`pip install 'gpumarket[learn]'`); a learned policy runs on numpy alone."""
