"""The study engine: experiments as specs (``configs/studies/*.py``) run by ``tools/run_study.py``."""
