// llama.cpp's side of layer_trace.py: tokenizes PROMPT as llama.cpp does (BOS as the GGUF says), runs
// it as one batch and writes every contiguous f32 tensor of the graph to OUT_DIR/<name>.f32 (a tensor
// name seen again gets .2, .3, ...: the last one is the op's final result), with `<file> <ne0> <ne1>
// ...` lines in OUT_DIR/index.txt and the token ids in OUT_DIR/tokens.txt.
//
// usage: layer_trace MODEL OUT_DIR on|off f16|f32 PROMPT   (flash attention, K/V cache type)
#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

static std::string g_dir;
static std::map<std::string, int> g_seen;
static FILE * g_index;

static bool on_tensor(struct ggml_tensor * t, bool ask, void *) {
    if (ask) {
        return true;  // every tensor
    }
    if (t->type != GGML_TYPE_F32 || !ggml_is_contiguous(t)) {
        return true;
    }
    std::string name = t->name;
    for (auto & c : name) {
        if (c == ' ' || c == '/' || c == '(' || c == ')') {
            c = '_';
        }
    }
    int n = ++g_seen[name];
    if (n > 1) {
        name += "." + std::to_string(n);
    }
    std::vector<float> buf(ggml_nelements(t));
    ggml_backend_tensor_get(t, buf.data(), 0, ggml_nbytes(t));
    std::string path = g_dir + "/" + name + ".f32";
    FILE * f = fopen(path.c_str(), "wb");
    if (!f || fwrite(buf.data(), sizeof(float), buf.size(), f) != buf.size()) {
        fprintf(stderr, "cannot write %s\n", path.c_str());
        exit(1);
    }
    fclose(f);
    fprintf(g_index, "%s %lld %lld %lld %lld\n", name.c_str(), (long long) t->ne[0], (long long) t->ne[1],
            (long long) t->ne[2], (long long) t->ne[3]);
    return true;
}

int main(int argc, char ** argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL OUT_DIR on|off f16|f32 PROMPT\n", argv[0]);
        return 2;
    }
    g_dir = argv[2];
    const bool fa = strcmp(argv[3], "on") == 0;
    const ggml_type kv = strcmp(argv[4], "f32") == 0 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    g_index = fopen((g_dir + "/index.txt").c_str(), "w");
    if (!g_index) {
        fprintf(stderr, "cannot write to %s\n", g_dir.c_str());
        return 1;
    }

    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    std::string prompt = argv[5];
    std::vector<llama_token> tokens(prompt.size() + 16);
    int n = llama_tokenize(vocab, prompt.c_str(), prompt.size(), tokens.data(), tokens.size(), true, false);
    if (n < 0) {
        return 1;
    }
    tokens.resize(n);
    FILE * tf = fopen((g_dir + "/tokens.txt").c_str(), "w");
    for (int i = 0; i < n; i++) {
        fprintf(tf, i ? ",%d" : "%d", tokens[i]);
    }
    fclose(tf);

    // The goldens' settings (gen_greedy.py), with the attention as asked.
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = cp.n_ubatch = 512;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.flash_attn_type = fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = kv;
    cp.cb_eval = on_tensor;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx || llama_decode(ctx, llama_batch_get_one(tokens.data(), n)) != 0) {
        fprintf(stderr, "llama_decode failed\n");
        return 1;
    }
    fclose(g_index);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
