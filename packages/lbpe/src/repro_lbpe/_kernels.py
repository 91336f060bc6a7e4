"""Numba kernels of LBPE reading B: a byte trie of the vocabulary and the longest-first segmenter.

Nothing here knows about text, regexes or special tokens (`repro_lbpe.lbpe` owns those). The trie
is stored as an open-addressing hash table from an edge key `(node << 8) | byte` (int64) to the
child node, plus `node_token[node]` = the token id spelled by the path to `node` (-1 if none).
Node 0 is the root.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from repro_core._bpe_kernels import _bucket as _slot
from repro_core._bpe_kernels import _pair_lookup as _table_get
from repro_core._bpe_kernels import piece_buffers


@njit(cache=True)
def _child(edge_keys, edge_vals, shift, node, byte):
    """Child of `node` along `byte`, or -1: the core's open-addressing lookup, key node<<8 | byte."""
    return _table_get(edge_keys, edge_vals, shift, (np.int64(node) << 8) | np.int64(byte))


@njit(cache=True)
def build_trie(data, offsets, token_ids, table_bits):
    """Trie of the byte strings data[offsets[k]:offsets[k+1]] ending in token_ids[k].

    A string that is already in the trie keeps its first token id (callers list tokens in rank
    order, so the lowest-rank id wins). Returns (edge_keys, edge_vals, node_token).
    """
    size = 1 << table_bits
    shift = 64 - table_bits
    mask = size - 1
    edge_keys = np.full(size, -1, dtype=np.int64)
    edge_vals = np.full(size, -1, dtype=np.int32)
    node_token = np.full(data.size + 1, -1, dtype=np.int32)
    n_nodes = 1
    for k in range(offsets.size - 1):
        node = 0
        for p in range(offsets[k], offsets[k + 1]):
            key = (np.int64(node) << 8) | np.int64(data[p])
            i = _slot(key, shift)
            while edge_keys[i] != -1 and edge_keys[i] != key:
                i = (i + 1) & mask
            if edge_keys[i] == -1:
                edge_keys[i] = key
                edge_vals[i] = n_nodes
                n_nodes += 1
            node = edge_vals[i]
        if node_token[node] == -1:
            node_token[node] = token_ids[k]
    return edge_keys, edge_vals, node_token[:n_nodes].copy()


@njit(cache=True)
def lbpe_encode_pieces(
    data, offsets, edge_keys, edge_vals, shift, node_token, byte_token, token_rank,
    tie_by_rank, max_token_len, exp_offsets, exp_ids,
):  # fmt: skip
    """LBPE reading B (longest token first) on many byte strings ("pieces") at once.

    For piece s: every occurrence (start, length >= 2, token) of a vocabulary token in s is found
    with one trie walk per start position; occurrences are visited by decreasing length, equal
    lengths by start (`tie_by_rank` False: the left-to-right scan) or by (token_rank, start)
    (`tie_by_rank` True); an occurrence is accepted when it overlaps no accepted one; bytes not
    covered become their byte token `byte_token[b]`. Each final id t is written as
    exp_ids[exp_offsets[t]:exp_offsets[t+1]] (identity, or e.g. Scaffold-BPE demolition).

    Overlap test in O(1): every accepted occurrence is at least as long as the current one, so one
    that overlaps [a, a + m) must cover a or a + m - 1.

    Returns (ids, ids_offsets): the output of piece k is ids[ids_offsets[k]:ids_offsets[k+1]].
    """
    n_pieces = offsets.size - 1
    max_len, out, out_offsets = piece_buffers(data, offsets, exp_offsets)
    covered = np.zeros(max_len, dtype=np.bool_)
    accepted_token = np.full(max_len, -1, dtype=np.int32)  # token starting at a position
    accepted_len = np.zeros(max_len, dtype=np.int64)
    per_len = np.zeros(max_token_len + 2, dtype=np.int64)  # occurrences per length, then offsets
    cap = 4 * max_len + 16
    occ_start = np.empty(cap, dtype=np.int64)  # occurrences in walk order
    occ_len = np.empty(cap, dtype=np.int64)
    occ_tok = np.empty(cap, dtype=np.int32)
    order = np.empty(cap, dtype=np.int64)  # occurrence indices bucketed by decreasing length
    n_out = 0
    out_offsets[0] = 0
    for k in range(n_pieces):
        base = offsets[k]
        length = offsets[k + 1] - base
        # 1. every occurrence of a token of >= 2 bytes: one trie walk per start position
        n_occ = 0
        per_len[:] = 0
        for a in range(length):
            node = 0
            for e in range(a, length):
                node = _child(edge_keys, edge_vals, shift, node, data[base + e])
                if node < 0:
                    break
                tok = node_token[node]
                if tok >= 0 and e > a:
                    if n_occ == occ_start.size:
                        grown = 2 * occ_start.size
                        occ_start = np.concatenate((occ_start, np.empty(grown - n_occ, np.int64)))
                        occ_len = np.concatenate((occ_len, np.empty(grown - n_occ, np.int64)))
                        occ_tok = np.concatenate((occ_tok, np.empty(grown - n_occ, np.int32)))
                        order = np.empty(grown, dtype=np.int64)
                    occ_start[n_occ] = a
                    occ_len[n_occ] = e - a + 1
                    occ_tok[n_occ] = tok
                    per_len[e - a + 1] += 1
                    n_occ += 1
        # 2. bucket by decreasing length (stable: start order kept inside a bucket)
        pos = 0
        for m in range(max_token_len, 1, -1):
            c = per_len[m]
            per_len[m] = pos
            pos += c
        for i in range(n_occ):
            m = occ_len[i]
            order[per_len[m]] = i
            per_len[m] += 1
        if tie_by_rank:  # inside each equal-length bucket: lower rank first, then leftmost
            lo = 0
            while lo < n_occ:
                m = occ_len[order[lo]]
                hi = lo
                while hi < n_occ and occ_len[order[hi]] == m:
                    hi += 1
                if hi - lo > 1:
                    keys = np.empty(hi - lo, dtype=np.int64)
                    for j in range(lo, hi):
                        keys[j - lo] = (token_rank[occ_tok[order[j]]] << 32) | occ_start[order[j]]
                    perm = np.argsort(keys)
                    chunk = order[lo:hi].copy()
                    for j in range(hi - lo):
                        order[lo + j] = chunk[perm[j]]
                lo = hi
        # 3. accept the occurrences that overlap no accepted one
        for j in range(n_occ):
            i = order[j]
            a = occ_start[i]
            m = occ_len[i]
            if covered[a] or covered[a + m - 1]:
                continue
            for p in range(a, a + m):
                covered[p] = True
            accepted_token[a] = occ_tok[i]
            accepted_len[a] = m
        # 4. emit in text order; uncovered bytes become byte tokens
        p = 0
        while p < length:
            if accepted_token[p] >= 0:
                t = accepted_token[p]
                step = accepted_len[p]
            else:
                t = byte_token[data[base + p]]
                step = 1
            for e in range(exp_offsets[t], exp_offsets[t + 1]):
                out[n_out] = exp_ids[e]
                n_out += 1
            p += step
        for p in range(length):
            covered[p] = False
            accepted_token[p] = -1
        out_offsets[k + 1] = n_out
    return out[:n_out].copy(), out_offsets
