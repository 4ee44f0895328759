from lightning_kd.nn.mult import MulTEncoder
from lightning_kd.nn.text import BertTextEncoder
