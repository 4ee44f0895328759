from lightning_kd.nn.biosignal import BiosignalEncoder, BiosignalEncoderOptions
from lightning_kd.nn.fusion_transformer import Adapter, AdapterOptions, FusionTransformer, FusionTransformerOptions
from lightning_kd.nn.mult import MulTEncoder
from lightning_kd.nn.text import BertTextEncoder
