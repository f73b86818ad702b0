"""Optional faster encoding on the CPU: the encoder's linear layers in int8, off by default.

On the CPU, encoding an image is bound by matrix products, two thirds of them in linear layers. With
dynamic quantisation (weights stored as int8 with one scale per output channel, activations quantised
on the fly) those run about 1.7x faster through PyTorch's fbgemm kernels; attention, normalisation and
the decoder stay float32. The price is accuracy: each int8 layer is off by about 2 % (relative RMS),
which moves the scene codes and so the surface a little. `make bench` prints the speed-up and the
deviation from float32 on the benchmark model; the add-on shows it next to the option.
"""

import warnings

import torch
from torch import nn


def quantize_encoder(network: nn.Module) -> None:
    """Replace, in place, the linear layers of the ViT's and the backbone's transformer layers by int8 ones.

    The projections around them stay float32: they are small, and the model reads its precision off the
    backbone's input projection.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        # PyTorch announces that torch.ao quantisation moves to torchao; in the pinned torch it works.
        warnings.simplefilter("ignore")
        for layers in (network.image_tokenizer.model.encoder, network.backbone.transformer_blocks):
            quantize_dynamic(layers, {nn.Linear: per_channel_dynamic_qconfig}, torch.qint8, inplace=True)
