import gzip,json,sys,os,botocore
p=os.path.join(os.path.dirname(botocore.__file__),'data/ec2/2016-11-15/service-2.json.gz')
m=json.load(gzip.open(p))
S=m['shapes']
def wire(name,mem):
    if 'queryName' in mem: return mem['queryName']
    if 'locationName' in mem: return mem['locationName'][0].upper()+mem['locationName'][1:]
    return name
def walk(shape,prefix,out,stack):
    sh=S[shape]
    for n,mem in sh['members'].items():
        w=prefix+wire(n,mem)
        t=S[mem['shape']]
        if t['type']=='structure':
            if mem['shape'] in stack: continue
            walk(mem['shape'],w+'.',out,stack+[mem['shape']])
        elif t['type']=='list':
            el=t['member']['shape']
            if S[el]['type']=='structure':
                if el in stack: continue
                walk(el,w+'.N.',out,stack+[el])
            else: out.append(w+'.N')
        elif t['type']=='map':
            out.append(w+'.N.key'); out.append(w+'.N.value')
        else: out.append(w)
ops=sys.argv[1:]
print("//! The request members each implemented action accepts, as wire-name")
print("//! patterns (`N` = a 1-based list index), generated from the botocore EC2")
print("//! model (`service-2.json`, API version 2016-11-15) by flattening every")
print("//! input member the way botocore's `EC2Serializer` does. A parameter that")
print("//! matches none of its action's patterns is `UnknownParameter`.")
print("//!")
print("//! Regenerate with the script in this crate's `tools/gen_params.py`.")
print()
for op in ops:
    out=[]
    walk(m['operations'][op]['input']['shape'],'',out,[])
    const=''.join('_'+c if c.isupper() else c.upper() for c in op).lstrip('_').upper()
    print(f"/// Accepted members of `{op}`.")
    print(f"pub const {const}: &[&str] = &[")
    for o in out: print(f'    "{o}",')
    print("];")
    print()
