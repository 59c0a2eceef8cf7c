"""The parts of the command-line front doors (train.py, gui.py, predict.py) that are not the mathematics."""
