"""Reading runs back: analysis frames, figures, executing the study notebooks."""
