"""The compiled training core: the driver, ground-truth evaluation, online training, the driver's config."""
