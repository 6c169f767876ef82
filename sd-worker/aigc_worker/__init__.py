"""The Stable Diffusion worker: claims AIGCTasks placed on its node and generates their images."""
