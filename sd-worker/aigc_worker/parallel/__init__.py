"""Gang execution of one image on k worker processes (torch.distributed).

`layout` decides who computes what (classifier-free-guidance halves x row patches), `rendezvous`
forms the process group, `patch` makes UNet submodules exact on row patches, and `split` cuts the
denoiser's inputs and reassembles its output around every denoising step.
"""
