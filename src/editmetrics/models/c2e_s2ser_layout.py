"""C2E-S2SER's file layout, importable without torch (`editmetrics models`
checks weights with it; the model code in c2e_s2ser_net/_train imports torch)."""

# diffusers folders of a FLUX.1-Fill-dev copy
FILL_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler")
# files of a trained C2E-S2SER checkpoint folder
WEIGHTS_FILE = "c2e_s2ser.safetensors"
CONFIG_FILE = "config.json"
