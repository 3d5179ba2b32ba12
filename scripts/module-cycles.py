#!/usr/bin/env python3
"""Prints the circles between the top-level modules of the dibop crate (runtime/src) and each
module's edges, read from its crate:: paths (test modules and comments left out). Issue 11 wants
none: run it after moving code to see what is left."""
import os,re,collections,sys
root=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'runtime', 'src')
mods={}
for entry in os.listdir(root):
    name=entry[:-3] if entry.endswith('.rs') else entry
    if name in ('lib','main'): continue
    mods[name]=os.path.join(root,entry)
edges=collections.defaultdict(set)
for m,path in mods.items():
    files=[]
    if os.path.isdir(path):
        for dp,_,fs in os.walk(path):
            files+= [os.path.join(dp,f) for f in fs if f.endswith('.rs')]
    else: files=[path]
    for f in files:
        txt=open(f).read()
        txt=re.split(r'#\[cfg\(test\)\]\s*mod tests',txt)[0]
        txt='\n'.join(l for l in txt.split('\n') if not l.lstrip().startswith('//'))
        for t in re.findall(r'crate::([a-z_]+)',txt):
            if t!=m and t in mods: edges[m].add(t)
        for grp in re.findall(r'crate::\{([^}]*)\}',txt):
            for t in re.findall(r'\b([a-z_]+)\b',grp):
                if t!=m and t in mods: edges[m].add(t)
index={};low={};st=[];on=set();sccs=[];i=[0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in edges[v]:
        if w not in index: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        c=[]
        while True:
            w=st.pop();on.discard(w);c.append(w)
            if w==v: break
        sccs.append(c)
for v in sorted(mods):
    if v not in index: sc(v)
for c in sccs:
    if len(c)>1: print('cycle:',len(c),sorted(c))
for k in sorted(edges):
    print(k,'->',', '.join(sorted(edges[k])))
