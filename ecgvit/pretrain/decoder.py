"""The light transformer decoder shared by the MAE branch and the clip branches (Nextclip, Centerclip).

Both decoders are the seed's recipe: a linear projection into the decoder width, a learnable position per output
token, a few timm ``Block``s, LayerNorm and a linear "size matcher" to the predicted values. Linears, norms and the
[mask] token start as in facebookresearch/mae; the positions start as small normal noise by default (learnable, as the
seed's), where MAE fixes them to sinusoids (``pos_init='sincos'`` starts them there and still learns them). They differ
only in what goes in (MAE: the kept tokens plus [mask] tokens; the clip: one [CLS] vector projected to several tokens)
and in how the output is laid out.
"""
import torch
from timm.models.vision_transformer import Block
from torch import nn

from ecgvit.layers import adopt_ecg_attention, sincos_pos_embed_1d
from ecgvit.models.ecg_vit import resample_pos_embed_1d

__all__ = ['LightDecoder', 'decoder_blocks', 'init_decoder_weights', 'POS_INITS']

# How a light decoder's learnable positions start (see LightDecoder).
POS_INITS = ('normal', 'sincos')


def decoder_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float) -> nn.Sequential:
    """The transformer blocks of a light decoder (timm ``Block``, qkv bias, as MAE's decoder).

    Args:
        dim: Token width.
        depth: Blocks (0: an empty ``Sequential``, the identity).
        num_heads: Attention heads; must divide ``dim``.
        mlp_ratio: MLP hidden width over ``dim``.
    """
    blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)])
    return adopt_ecg_attention(blocks)


def init_decoder_weights(module: nn.Module) -> None:
    """MAE's decoder init: xavier-uniform linears with zero bias, unit LayerNorms.

    Args:
        module: The module whose linear and LayerNorm layers (its own and its descendants') are initialised in place.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class LightDecoder(nn.Module):
    """``decoder_embed`` -> (+ positions) -> blocks -> LayerNorm -> ``decoder_pred``; subclasses say what goes in.

    Args:
        in_dim: Width of the encoder output fed to ``decoder_embed``.
        embed_out: Output width of ``decoder_embed`` (``decoder_embed_dim``, or a multiple to make several tokens).
        num_tokens: Learnable decoder positions (resampled along time for another token count).
        out_dim: Values predicted per token.
        decoder_embed_dim: Decoder width.
        decoder_depth: Transformer blocks.
        decoder_num_heads: Attention heads.
        decoder_mlp_ratio: MLP ratio.
        mask_token: Also learn a ``[mask]`` token (MAE fills dropped positions with it).
        pos_init: How the learnable positions start: ``'normal'`` (``trunc_normal``, std 0.02: the default, as ecgvit's
            runs so far) or ``'sincos'`` (:func:`~ecgvit.layers.sincos_pos_embed_1d`, entries in [-1, 1]). The other
            parameters draw the same values either way, so two decoders of one seed differ in their positions only.
    """

    def __init__(
            self,
            in_dim: int,
            embed_out: int,
            num_tokens: int,
            out_dim: int,
            decoder_embed_dim: int = 256,
            decoder_depth: int = 1,
            decoder_num_heads: int = 8,
            decoder_mlp_ratio: float = 2.0,
            mask_token: bool = False,
            pos_init: str = 'normal',
    ) -> None:
        super().__init__()
        if pos_init not in POS_INITS:
            raise ValueError(f'pos_init must be one of {POS_INITS}, got {pos_init!r}.')
        self.pos_init = pos_init
        # Registration order fixes the init's random draws and the state-dict order: keep it.
        self.decoder_embed = nn.Linear(in_dim, embed_out)
        if mask_token:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_tokens, decoder_embed_dim))
        self.decoder_blocks = decoder_blocks(decoder_embed_dim, decoder_depth, decoder_num_heads, decoder_mlp_ratio)
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim)
        self.decoder_pred = nn.Linear(decoder_embed_dim, out_dim)
        self.init_weights()

    def init_weights(self) -> None:
        """Small normal for the [mask] token and (``pos_init='normal'``) the positions, xavier for linears."""
        if hasattr(self, 'mask_token'):
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)  # drawn either way: the later draws stay the same
        if self.pos_init == 'sincos':
            with torch.no_grad():
                self.decoder_pos_embed.copy_(sincos_pos_embed_1d(*self.decoder_pos_embed.shape[1:])[None])
        init_decoder_weights(self)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, decoder_embed_dim)`` tokens in output order -> ``(B, T, out_dim)`` (positions, blocks, norm).

        Args:
            x: The tokens; the learnable positions are resampled to their count ``T``.
        """
        x = x + resample_pos_embed_1d(self.decoder_pos_embed, x.shape[1], num_prefix_tokens=0)
        x = self.decoder_blocks(x)
        x = self.decoder_norm(x)
        return self.decoder_pred(x)
