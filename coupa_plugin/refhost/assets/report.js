(function(){
"use strict";
var data=JSON.parse(document.getElementById("review-data").textContent);
var KIND={p:"person",a:"API account",s:"support account"};
var STATUS={e:"enabled",d:"disabled",u:"unknown"};
var LIMIT=500;
function key(cell,numeric){var t=cell.getAttribute("data-sort")||cell.textContent;
 return numeric?parseFloat(t.replace(/[^0-9.\-]/g,""))||0:t.toLowerCase();}
function sortable(table){
 var heads=table.tHead?table.tHead.rows[0].cells:[];
 Array.prototype.forEach.call(heads,function(th,col){
  var b=document.createElement("button");b.type="button";
  while(th.firstChild){b.appendChild(th.firstChild);}th.appendChild(b);
  b.addEventListener("click",function(){
   var dir=th.getAttribute("aria-sort")==="ascending"?"descending":"ascending";
   Array.prototype.forEach.call(heads,function(h){h.removeAttribute("aria-sort");});
   th.setAttribute("aria-sort",dir);
   var numeric=th.classList.contains("n");var body=table.tBodies[0];
   var rows=Array.prototype.filter.call(body.rows,function(r){
    return !r.classList.contains("detail");});
   rows.sort(function(a,b){var x=key(a.cells[col],numeric),y=key(b.cells[col],numeric);
    var c=x<y?-1:x>y?1:0;return dir==="ascending"?c:-c;});
   rows.forEach(function(r){body.appendChild(r);if(r._detail){body.appendChild(r._detail);}});
  });
 });
}
function filterable(input,table){
 input.addEventListener("input",function(){
  var q=input.value.trim().toLowerCase();
  Array.prototype.forEach.call(table.tBodies[0].rows,function(r){
   if(r.classList.contains("detail")){return;}
   var hide=q&&r.textContent.toLowerCase().indexOf(q)<0;
   r.hidden=!!hide;if(r._detail){r._detail.hidden=!!hide;}
  });
 });
}
function cell(tr,text,cls){
 var td=tr.insertCell();td.textContent=text;if(cls){td.className=cls;}return td;}
function holdersTable(ent,name){
 var ids=[],at=-1,gaps=data.holders[ent]||[];
 for(var i=0;i<gaps.length;i++){at+=gaps[i];ids.push(at);}
 var wrap=document.createElement("div");
 var input=document.createElement("input");input.type="search";
 input.placeholder="Filter holders";input.setAttribute("aria-label","Filter holders of "+name);
 var table=document.createElement("table");table.id="holders-"+ent;
 table.createCaption().textContent="Holders of "+name+" ("+ids.length+")";
 var head=table.createTHead().insertRow();
 [["User id","n"],["Login",""],["Name",""],["Status",""],["Account",""]].forEach(function(h){
  var th=document.createElement("th");th.scope="col";th.textContent=h[0];
  if(h[1]){th.className=h[1];}head.appendChild(th);});
 var body=table.createTBody();var note=document.createElement("p");note.className="note";
 function draw(){
  var q=input.value.trim().toLowerCase(),shown=0,total=0;body.textContent="";
  ids.forEach(function(ix){var u=data.users[ix];
   var line=(u[0]+" "+u[1]+" "+u[2]+" "+STATUS[u[3]]+" "+KIND[u[4]]).toLowerCase();
   if(q&&line.indexOf(q)<0){return;}total++;if(shown>=LIMIT){return;}shown++;
   var tr=body.insertRow();cell(tr,u[0],"n");cell(tr,u[1]);cell(tr,u[2]);
   cell(tr,STATUS[u[3]]);cell(tr,KIND[u[4]]);});
  note.textContent=total>shown?("Showing "+shown+" of "+total+"; filter to narrow."):"";
 }
 var order={col:-1,dir:1};
 function field(u,col){return col===0?Number(u[0]):col===3?STATUS[u[3]]:col===4?KIND[u[4]]:
  String(u[col]).toLowerCase();}
 Array.prototype.forEach.call(head.cells,function(th,col){
  var b=document.createElement("button");b.type="button";b.textContent=th.textContent;
  th.textContent="";th.appendChild(b);
  b.addEventListener("click",function(){  // sorts every holder, not only those drawn
   order.dir=order.col===col?-order.dir:1;order.col=col;
   Array.prototype.forEach.call(head.cells,function(h){h.removeAttribute("aria-sort");});
   th.setAttribute("aria-sort",order.dir>0?"ascending":"descending");
   ids.sort(function(a,b){var x=field(data.users[a],col),y=field(data.users[b],col);
    return (x<y?-1:x>y?1:0)*order.dir;});
   draw();});
 });
 input.addEventListener("input",draw);draw();
 wrap.appendChild(input);wrap.appendChild(table);wrap.appendChild(note);return wrap;
}
Array.prototype.forEach.call(document.querySelectorAll("table.sortable"),sortable);
Array.prototype.forEach.call(document.querySelectorAll("input[data-filter]"),function(input){
 filterable(input,document.getElementById(input.getAttribute("data-filter")));});
Array.prototype.forEach.call(document.querySelectorAll("button.holders"),function(b){
 b.addEventListener("click",function(){
  var row=b.closest("tr");
  if(row._detail){var hide=!row._detail.hidden;row._detail.hidden=hide;
   b.setAttribute("aria-expanded",String(!hide));return;}
  var detail=document.createElement("tr");detail.className="detail";
  var td=detail.insertCell();td.colSpan=row.cells.length;
  td.appendChild(holdersTable(b.getAttribute("data-entitlement"),b.getAttribute("data-name")));
  row.parentNode.insertBefore(detail,row.nextSibling);row._detail=detail;
  b.setAttribute("aria-expanded","true");
 });
});
var wanted="";
try{wanted=decodeURIComponent(location.hash.replace(/^#holders=/,""));}catch(e){wanted="";}
if(wanted&&location.hash.indexOf("#holders=")===0){
 Array.prototype.forEach.call(document.querySelectorAll("button.holders"),function(b){
  if(b.getAttribute("data-entitlement")===wanted){b.click();b.scrollIntoView();}});
}
document.querySelectorAll(".noscript").forEach(function(e){e.hidden=true;});
document.body.setAttribute("data-ready","1");
})();
