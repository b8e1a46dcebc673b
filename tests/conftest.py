import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
# One thread: the test models are small, and on a shared 2-core machine two threads waiting on
# each other made some tests 100x slower. Timing code restores the count it changes.
torch.set_num_threads(1)
